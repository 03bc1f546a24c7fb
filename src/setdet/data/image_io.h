// Image files for the data pipeline: OpenCV decoding and encoding with errors that name the file.
#pragma once

#include <opencv2/core.hpp>
#include <string>

namespace setdet {

// Decodes a colour image (BGR, CV_8UC3). Throws setdet::Error "<path>: no such file" or
// "<path>: cannot decode image".
cv::Mat read_image(const std::string& path);

// Encodes by extension (.jpg / .jpeg with `jpeg_quality`, .png) and writes the file.
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
