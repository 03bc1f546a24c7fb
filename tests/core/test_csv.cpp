#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core_testing.h"
#include "setdet/core/error.h"
#include "setdet/core/io/csv.h"

namespace setdet {
namespace {

// Every record of `text` as strings.
std::vector<std::vector<std::string>> read_all(const std::string& text) {
  CsvReader csv = CsvReader::from_string(text, "t.csv");
  std::vector<std::vector<std::string>> rows;
  CsvRecord r;
  while (csv.next(r)) {
    rows.emplace_back();
    for (size_t i = 0; i < r.size(); ++i) rows.back().emplace_back(r[i]);
  }
  return rows;
}

using testing::error_of;

using Rows = std::vector<std::vector<std::string>>;

TEST(Csv, HeaderByNameAndPlainRecords) {
  CsvReader csv = CsvReader::from_string("a,b,c\n1,2,3\n4,5,6\n", "t.csv");
  EXPECT_EQ(csv.header(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(csv.column("c"), 2u);
  EXPECT_FALSE(csv.find_column("d").has_value());
  CsvRecord r;
  ASSERT_TRUE(csv.next(r));
  EXPECT_EQ(r.line(), 2);
  EXPECT_EQ(r[1], "2");
  ASSERT_TRUE(csv.next(r));
  EXPECT_EQ(r.line(), 3);
  EXPECT_EQ(r[2], "6");
  EXPECT_FALSE(csv.next(r));
}

TEST(Csv, QuotedFieldsCommasEscapedQuotesAndLineBreaks) {
  EXPECT_EQ(read_all("a,b\n\"x,y\",\"say \"\"hi\"\"\"\n\"two\nlines\",\"\"\n"),
            (Rows{{"x,y", "say \"hi\""}, {"two\nlines", ""}}));
  // two escaped fields in one record keep their own text
  EXPECT_EQ(read_all("a,b\n\"1\"\"\",\"2\"\"\"\n"), (Rows{{"1\"", "2\""}}));
  // a line break inside quotes counts for the next record's line number
  CsvReader csv = CsvReader::from_string("a,b\n\"1\n2\",x\n3,y\n", "t.csv");
  CsvRecord r;
  ASSERT_TRUE(csv.next(r));
  EXPECT_EQ(r.line(), 2);
  ASSERT_TRUE(csv.next(r));
  EXPECT_EQ(r.line(), 4);
  EXPECT_EQ(r[0], "3");
}

TEST(Csv, CrlfBomBlankLinesTrailingCommaAndNoFinalNewline) {
  EXPECT_EQ(read_all("\xEF\xBB\xBF"
                     "a,b\r\n1,2\r\n\r\n\n3,\r\n\"q\",4"),
            (Rows{{"1", "2"}, {"3", ""}, {"q", "4"}}));
  CsvReader csv = CsvReader::from_string(
      "\xEF\xBB\xBF"
      "a,b\r\n",
      "t.csv");
  EXPECT_EQ(csv.header()[0], "a");
  EXPECT_EQ(csv.header()[1], "b");
}

TEST(Csv, Numbers) {
  CsvReader csv = CsvReader::from_string(
      "x\n0.5\n +1e-3 \n-2\n0.1000000000000000055511151231257827\n", "t.csv");
  CsvRecord r;
  std::vector<double> v;
  while (csv.next(r)) v.push_back(r.number(0));
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0], 0.5);
  EXPECT_EQ(v[1], 1e-3);
  EXPECT_EQ(v[2], -2.0);
  EXPECT_EQ(v[3], 0.1);  // correctly rounded
}

TEST(Csv, ErrorsNameFileLineAndColumn) {
  const auto field_error = [](const std::string& text) {
    return error_of([&] {
      CsvReader csv = CsvReader::from_string(text, "boxes.csv");
      CsvRecord r;
      while (csv.next(r)) r.number(csv.column("XMin"));
    });
  };
  EXPECT_EQ(field_error("ID,XMin\na,0.5\nb,abc\n"),
            "boxes.csv:3: column 'XMin' (2): expected a number, got 'abc'");
  EXPECT_EQ(field_error("ID,XMin\na,\n"),
            "boxes.csv:2: column 'XMin' (2): expected a number, got ''");
  EXPECT_EQ(field_error("ID,XMin\na,0.5x\n"),
            "boxes.csv:2: column 'XMin' (2): expected a number, got '0.5x'");
  EXPECT_EQ(field_error("ID,XMax\na,1\n"), "boxes.csv: missing column 'XMin' (header: ID, XMax)");
  EXPECT_EQ(field_error("ID,XMin\na,1\nb,2,3\n"),
            "boxes.csv:3: expected 2 fields as in the header, got 3");
  EXPECT_EQ(field_error("ID,XMin\na,1\n\"b\nc,2\n"),
            "boxes.csv:3: field 1: quote opened here is never closed");
  EXPECT_EQ(field_error("ID,XMin\n\"a\"b,1\n"),
            "boxes.csv:2: field 1: expected ',' or the end of the line after a closing quote, "
            "got 'b'");
  EXPECT_EQ(field_error(""), "boxes.csv: empty file, expected a header row");
  EXPECT_EQ(field_error("\n\n"), "boxes.csv: empty file, expected a header row");
  EXPECT_EQ(field_error("ID,XMin,ID\n"), "boxes.csv:1: column 'ID' appears twice in the header");

  CsvReader csv = CsvReader::from_string("ID,Name\n1,\n", "names.csv");
  CsvRecord r;
  ASSERT_TRUE(csv.next(r));
  EXPECT_EQ(error_of([&] { r.text(1); }),
            "names.csv:2: column 'Name' (2): expected a non-empty value, got an empty field");
}

TEST(Csv, OpenReadsAFileAndNamesAMissingOne) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("setdet_csv_" + std::to_string(::getpid()) + ".csv"))
                               .string();
  std::ofstream(path) << "a,b\n1,2\n";
  CsvReader csv = CsvReader::open(path);
  CsvRecord r;
  ASSERT_TRUE(csv.next(r));
  EXPECT_EQ(r[1], "2");
  EXPECT_EQ(csv.name(), path);
  std::filesystem::remove(path);
  EXPECT_EQ(error_of([&] { CsvReader::open(path); }), path + ": cannot open file for reading");
}

}  // namespace
}  // namespace setdet
