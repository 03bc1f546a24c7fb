// Writes that matter go to a temporary file beside the target and are renamed into place.
#pragma once

#include <string>
#include <string_view>

namespace setdet {

// Writes `content` to `path` atomically (temp file in the same directory + fsync + rename).
// Throws setdet::Error naming the path on failure.
void write_file_atomic(const std::string& path, std::string_view content);

}  // namespace setdet
