#include "setdet/data/image_io.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "setdet/core/error.h"

namespace setdet {

cv::Mat read_image(const std::string& path) {
  std::error_code ec;
  SETDET_CHECK(std::filesystem::is_regular_file(path, ec), path, ": no such file");
  cv::Mat image = cv::imread(path, cv::IMREAD_COLOR);
  SETDET_CHECK(!image.empty(), path, ": cannot decode image");
  return image;
}

void write_image(const std::string& path, const cv::Mat& image, int jpeg_quality) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::vector<int> params;
  if (ext == ".jpg" || ext == ".jpeg") {
    params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  } else {
    SETDET_CHECK(ext == ".png", path, ": unsupported image extension '", ext,
                 "' (expected .jpg, .jpeg or .png)");
  }
  std::vector<uchar> bytes;
  SETDET_CHECK(cv::imencode(ext, image, bytes, params), path, ": cannot encode image");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  SETDET_CHECK(out.good(), path, ": cannot open for writing (", std::strerror(errno), ")");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  SETDET_CHECK(!out.fail(), path, ": write failed");
}

ScopedOpenCvSerial::ScopedOpenCvSerial() : previous_(cv::getNumThreads()) { cv::setNumThreads(0); }

ScopedOpenCvSerial::~ScopedOpenCvSerial() { cv::setNumThreads(previous_); }

}  // namespace setdet
