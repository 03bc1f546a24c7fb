// Image files for the data pipeline: OpenCV decoding and encoding with errors that name the file.
// Before anything is decoded, the header's width and height are read and checked against the
// limits below, so a small file declaring a huge image is refused with setdet's own message.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace setdet {

// The largest image setdet decodes or resizes to: 32768 px a side and 2^28 pixels (768 MiB as
// 8-bit BGR).
constexpr int64_t kMaxImageSide = 32768;
constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

struct ImageHeader {
  const char* format = "";  // "JPEG", "PNG", "BMP", "PNM" (P1-P6), "WebP", "TIFF"
  int64_t width = 0;
  int64_t height = 0;
};

// The format and size a file's header declares. std::nullopt when `bytes` do not start like one
// of the formats above; an Error naming `path` when they do but the header is cut short or
// malformed.
std::optional<ImageHeader> read_image_header(std::string_view bytes, const std::string& path);

// Checks the header (known format, size within the limits), then decodes a colour image (BGR,
// CV_8UC3). Errors name `path`: "<path>: cannot decode image: ...".
cv::Mat decode_image(std::string_view bytes, const std::string& path);

// Reads and decodes the file (decode_image). Throws setdet::Error "<path>: no such file" or
// "<path>: cannot decode image ...".
cv::Mat read_image(const std::string& path);

// Encodes by extension (.jpg / .jpeg with `jpeg_quality`, .png) and writes the file atomically.
void write_image(const std::string& path, const cv::Mat& image, int jpeg_quality = 95);

// Runs OpenCV single-threaded while alive (the data pipeline parallelises over images instead),
// restoring the previous setting afterwards. OpenCV's setting is process-wide.
class ScopedOpenCvSerial {
 public:
  ScopedOpenCvSerial();
  ~ScopedOpenCvSerial();
  ScopedOpenCvSerial(const ScopedOpenCvSerial&) = delete;
  ScopedOpenCvSerial& operator=(const ScopedOpenCvSerial&) = delete;

 private:
  int previous_;
};

}  // namespace setdet
