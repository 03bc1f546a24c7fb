// Image decoding through setdet's path (header check, then OpenCV): any input either decodes to
// a BGR image of the size its header declares or is a setdet::Error. Inputs whose header
// declares more than 2^22 pixels are only header-checked (legal, but slow to decode in a fuzzer).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <opencv2/core/utility.hpp>
#include <string_view>

#include "setdet/core/error.h"
#include "setdet/data/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool serial = [] {
    cv::setNumThreads(0);
    return true;
  }();
  (void)serial;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto header = setdet::read_image_header(bytes, "fuzz");
    constexpr int64_t kSide = 4096;  // sides checked first: their product may not fit int64
    if (header && (header->width > kSide || header->height > kSide ||
                   header->width * header->height > (int64_t{1} << 22))) {
      return 0;
    }
    const cv::Mat image = setdet::decode_image(bytes, "fuzz");
    if (image.empty() || image.type() != CV_8UC3) std::abort();
  } catch (const setdet::Error&) {
  }
  return 0;
}
