// JSON text output shared by every writer (COCO files, `setdet eval / infer / convert` reports):
// one escaping routine instead of one per writer.
#pragma once

#include <string>
#include <string_view>

namespace setdet {

// Appends `s` as a quoted JSON string: '"' and '\' escaped, \n \r \t as such, other control
// characters as \u00XX; bytes >= 0x80 (UTF-8) pass through unchanged.
void append_json_string(std::string& out, std::string_view s);

// `s` as a quoted JSON string (see append_json_string).
std::string json_string(std::string_view s);

// A JSON number: the shortest text that reads back as `v` (std::to_chars); NaN and infinities,
// which JSON cannot hold, as null.
std::string json_number(double v);

}  // namespace setdet
