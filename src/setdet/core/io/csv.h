// A small, fast CSV reader (RFC 4180): a header row naming the columns, fields separated by ',',
// optionally quoted with '"' ("" inside quotes is one quote; quoted fields may hold ',' and line
// breaks), records ending in LF or CRLF, a UTF-8 byte-order mark skipped, blank lines skipped
// (as pandas' read_csv does). The whole file is read once; unquoted fields are views into it.
// Every error names the file, the line and, where one is involved, the column:
//   "gt.csv:12: column 'XMin1': expected a number, got 'abc'".
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace setdet {

class CsvReader;

// One record. Field views stay valid until the next CsvReader::next() on the same record.
class CsvRecord {
 public:
  size_t size() const { return fields_.size(); }
  std::string_view operator[](size_t column) const { return fields_[column]; }
  int64_t line() const { return line_; }  // 1-based line on which the record starts

  // The field as a number (std::from_chars, so correctly rounded; surrounding spaces and a
  // leading '+' allowed). Throws setdet::Error naming file, line and column otherwise.
  double number(size_t column) const;
  // The field, which must not be empty.
  std::string_view text(size_t column) const;
  // "file:line: column 'name'" for messages about this record's field.
  std::string where(size_t column) const;
  [[noreturn]] void fail(size_t column, const std::string& message) const;

 private:
  friend class CsvReader;
  const CsvReader* reader_ = nullptr;
  int64_t line_ = 0;
  std::vector<std::string_view> fields_;
  std::deque<std::string> unescaped_;  // quoted fields that contained "" (stable addresses)
};

class CsvReader {
 public:
  // Reads `path` whole and parses its header. Throws setdet::Error naming the path if it cannot
  // be read, is empty, or its header is malformed / repeats a column name.
  static CsvReader open(const std::string& path);
  // Parses `text`; `name` stands for the file name in messages.
  static CsvReader from_string(std::string text, std::string name);

  const std::string& name() const { return name_; }
  const std::vector<std::string>& header() const { return header_; }
  std::optional<size_t> find_column(std::string_view name) const;
  // Index of a required column; throws "<file>: missing column 'X' (header: a, b, c)".
  size_t column(std::string_view name) const;

  // Reads the next record into `record`; false at the end of the file. Throws setdet::Error on a
  // record whose field count differs from the header's, an unterminated quote, or a character
  // after a closing quote.
  bool next(CsvRecord& record);

 private:
  CsvReader(std::string text, std::string name);
  // Parses one record starting at pos_; false at the end of input.
  bool parse_record(CsvRecord& record);

  std::string text_;
  std::string name_;
  std::vector<std::string> header_;
  size_t pos_ = 0;
  int64_t line_ = 1;  // line of text_[pos_]
};

}  // namespace setdet
