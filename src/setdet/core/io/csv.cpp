#include "setdet/core/io/csv.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "setdet/core/error.h"

namespace setdet {
namespace {

// A field quoted for a message, shortened when long.
std::string shown(std::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() <= kMax) return "'" + std::string(s) + "'";
  return "'" + std::string(s.substr(0, kMax)) + "...'";
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string CsvRecord::where(size_t column) const {
  std::string s = reader_->name() + ":" + std::to_string(line_) + ": column ";
  if (column < reader_->header().size()) {
    s += "'" + reader_->header()[column] + "' (" + std::to_string(column + 1) + ")";
  } else {
    s += std::to_string(column + 1);
  }
  return s;
}

void CsvRecord::fail(size_t column, const std::string& message) const {
  throw Error(where(column) + ": " + message);
}

double CsvRecord::number(size_t column) const {
  std::string_view s = trim_blanks(fields_[column]);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double value = 0.0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    fail(column, "expected a number, got " + shown(fields_[column]));
  }
  return value;
}

std::string_view CsvRecord::text(size_t column) const {
  if (fields_[column].empty()) fail(column, "expected a non-empty value, got an empty field");
  return fields_[column];
}

CsvReader::CsvReader(std::string text, std::string name)
    : text_(std::move(text)), name_(std::move(name)) {
  if (text_.size() >= 3 && std::memcmp(text_.data(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
  CsvRecord head;
  head.reader_ = this;
  SETDET_CHECK(parse_record(head), name_, ": empty file, expected a header row");
  for (size_t i = 0; i < head.size(); ++i) {
    const std::string column(head[i]);
    SETDET_CHECK(std::find(header_.begin(), header_.end(), column) == header_.end(), name_, ":",
                 head.line(), ": column '", column, "' appears twice in the header");
    header_.push_back(column);
  }
}

CsvReader CsvReader::open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SETDET_CHECK(in.good(), path, ": cannot open file for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  SETDET_CHECK(!in.bad(), path, ": read error");
  return CsvReader(std::move(buffer).str(), path);
}

CsvReader CsvReader::from_string(std::string text, std::string name) {
  return CsvReader(std::move(text), std::move(name));
}

std::optional<size_t> CsvReader::find_column(std::string_view name) const {
  const auto it = std::find(header_.begin(), header_.end(), name);
  if (it == header_.end()) return std::nullopt;
  return static_cast<size_t>(it - header_.begin());
}

size_t CsvReader::column(std::string_view name) const {
  if (const auto index = find_column(name)) return *index;
  std::string columns;
  for (const auto& h : header_) columns += (columns.empty() ? "" : ", ") + h;
  throw Error(name_ + ": missing column '" + std::string(name) + "' (header: " + columns + ")");
}

bool CsvReader::next(CsvRecord& record) {
  record.reader_ = this;
  if (!parse_record(record)) return false;
  if (record.size() != header_.size()) {
    throw Error(detail::concat(name_, ":", record.line(), ": expected ", header_.size(),
                               " fields as in the header, got ", record.size()));
  }
  return true;
}

bool CsvReader::parse_record(CsvRecord& record) {
  const char* s = text_.data();
  const size_t n = text_.size();
  // blank lines (LF or CRLF alone) are skipped
  while (pos_ < n) {
    if (s[pos_] == '\n') {
      ++pos_;
      ++line_;
    } else if (s[pos_] == '\r' && pos_ + 1 < n && s[pos_ + 1] == '\n') {
      pos_ += 2;
      ++line_;
    } else {
      break;
    }
  }
  if (pos_ >= n) return false;
  record.fields_.clear();
  record.unescaped_.clear();
  record.line_ = line_;
  while (true) {
    if (pos_ < n && s[pos_] == '"') {
      const int64_t open_line = line_;
      const size_t start = ++pos_;
      size_t segment = start;
      std::string* unescaped = nullptr;
      while (true) {
        const void* hit = std::memchr(s + pos_, '"', n - pos_);
        if (hit == nullptr) {
          throw Error(detail::concat(name_, ":", open_line, ": field ", record.size() + 1,
                                     ": quote opened here is never closed"));
        }
        const size_t quote = static_cast<size_t>(static_cast<const char*>(hit) - s);
        line_ += std::count(s + pos_, s + quote, '\n');
        if (quote + 1 < n && s[quote + 1] == '"') {  // "" stands for one quote
          if (unescaped == nullptr) unescaped = &record.unescaped_.emplace_back();
          unescaped->append(s + segment, quote + 1 - segment);
          pos_ = segment = quote + 2;
          continue;
        }
        if (unescaped != nullptr) {
          unescaped->append(s + segment, quote - segment);
          record.fields_.emplace_back(*unescaped);
        } else {
          record.fields_.emplace_back(s + start, quote - start);
        }
        pos_ = quote + 1;
        break;
      }
      if (pos_ >= n) return true;
      if (s[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s[pos_] == '\n' || (s[pos_] == '\r' && pos_ + 1 < n && s[pos_ + 1] == '\n')) {
        pos_ += s[pos_] == '\r' ? 2 : 1;
        ++line_;
        return true;
      }
      throw Error(detail::concat(name_, ":", line_, ": field ", record.size(),
                                 ": expected ',' or the end of the line after a closing quote, "
                                 "got '",
                                 s[pos_], "'"));
    }
    const size_t start = pos_;
    while (pos_ < n && s[pos_] != ',' && s[pos_] != '\n') ++pos_;
    size_t end = pos_;
    if (end > start && s[end - 1] == '\r' && (pos_ == n || s[pos_] == '\n')) --end;
    record.fields_.emplace_back(s + start, end - start);
    if (pos_ >= n) return true;
    if (s[pos_] == ',') {
      ++pos_;
      continue;
    }
    ++pos_;  // '\n'
    ++line_;
    return true;
  }
}

}  // namespace setdet
