#include "setdet/vrd/union_crop.h"

#include <algorithm>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "setdet/core/error.h"

namespace setdet {

CropMask parse_crop_mask(const std::string& value, const std::string& where) {
  if (value == "boxes") return CropMask::kBoxes;
  if (value == "hull") return CropMask::kHull;
  SETDET_CHECK(false, where, ": expected boxes or hull, got '", value, "'");
  return CropMask::kHull;
}

void masked_union_crop(const cv::Mat& image, const std::array<float, 4>& subject,
                       const std::array<float, 4>& object, const UnionCropOptions& options,
                       float* out) {
  SETDET_CHECK(image.type() == CV_8UC3, "masked_union_crop: expected an 8-bit BGR image");
  SETDET_CHECK(options.size > 0, "masked_union_crop: size must be positive, got ", options.size);
  for (const auto* b : {&subject, &object}) {
    SETDET_CHECK((*b)[2] >= (*b)[0] && (*b)[3] >= (*b)[1], "masked_union_crop: inverted box [",
                 (*b)[0], ", ", (*b)[1], ", ", (*b)[2], ", ", (*b)[3], "]");
  }
  const int S = options.size;
  const double x0 = std::min(subject[0], object[0]), y0 = std::min(subject[1], object[1]);
  const double w = std::max<double>(std::max(subject[2], object[2]) - x0, 1e-3);
  const double h = std::max<double>(std::max(subject[3], object[3]) - y0, 1e-3);
  const double sx = w / S, sy = h / S;
  // dst (u, v) -> src index coordinates (pixel i's centre at i): x0 + (u + 0.5) sx - 0.5
  const cv::Matx23d to_src(sx, 0.0, x0 + 0.5 * sx - 0.5, 0.0, sy, y0 + 0.5 * sy - 0.5);
  cv::Mat crop;
  cv::warpAffine(image, crop, to_src, cv::Size(S, S), cv::INTER_LINEAR | cv::WARP_INVERSE_MAP,
                 cv::BORDER_REPLICATE);

  std::vector<cv::Point2f> hull;
  if (options.mask == CropMask::kHull) {
    std::vector<cv::Point2f> corners;
    for (const auto* b : {&subject, &object}) {
      corners.emplace_back((*b)[0], (*b)[1]);
      corners.emplace_back((*b)[2], (*b)[1]);
      corners.emplace_back((*b)[2], (*b)[3]);
      corners.emplace_back((*b)[0], (*b)[3]);
    }
    cv::convexHull(corners, hull);
  }
  const auto inside = [](const std::array<float, 4>& b, double x, double y) {
    return x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3];
  };
  const size_t plane = static_cast<size_t>(S) * S;
  for (int v = 0; v < S; ++v) {
    const double y = y0 + (v + 0.5) * sy;
    const cv::Vec3b* row = crop.ptr<cv::Vec3b>(v);
    for (int u = 0; u < S; ++u) {
      const double x = x0 + (u + 0.5) * sx;
      const bool in_s = inside(subject, x, y), in_o = inside(object, x, y);
      bool keep = in_s || in_o;
      if (!keep && options.mask == CropMask::kHull) {
        keep = cv::pointPolygonTest(hull, cv::Point2f(static_cast<float>(x), static_cast<float>(y)),
                                    false) >= 0;
      }
      const size_t at = static_cast<size_t>(v) * S + u;
      for (int c = 0; c < 3; ++c) {
        const float value = keep ? static_cast<float>(row[u][2 - c]) : 0.0f;  // BGR -> RGB
        out[c * plane + at] = (value - options.mean[c]) / options.std[c];
      }
      out[3 * plane + at] = in_s ? 1.0f : 0.0f;
      out[4 * plane + at] = in_o ? 1.0f : 0.0f;
    }
  }
}

}  // namespace setdet
