// The visual model's masked union crop: colours sampled inside the two boxes, black outside them
// (mask "boxes") or outside their convex hull (mask "hull"), the subject / object mask planes,
// normalisation and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/imgproc.hpp>

#include "setdet/vrd/union_crop.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

// 100 x 100, green everywhere, subject box [10, 10, 30, 30] red, object box [60, 50, 90, 80] blue
// (RGB; the image is BGR).
struct Scene {
  cv::Mat image{100, 100, CV_8UC3, cv::Scalar(0, 255, 0)};
  std::array<float, 4> subject{10, 10, 30, 30}, object{60, 50, 90, 80};
  Scene() {
    image(cv::Rect(10, 10, 20, 20)).setTo(cv::Scalar(0, 0, 255));
    image(cv::Rect(60, 50, 30, 30)).setTo(cv::Scalar(255, 0, 0));
  }
};

bool in(const std::array<float, 4>& b, double x, double y) {
  return x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3];
}

// Whether the point is at least `d` pixels from every region edge (bilinear sampling there reads
// one colour only).
bool clear_of_edges(const Scene& s, double x, double y, double d) {
  for (const auto* b : {&s.subject, &s.object}) {
    for (double e : {(*b)[0], (*b)[2]}) {
      if (std::abs(x - e) < d && y > (*b)[1] - d && y < (*b)[3] + d) return false;
    }
    for (double e : {(*b)[1], (*b)[3]}) {
      if (std::abs(y - e) < d && x > (*b)[0] - d && x < (*b)[2] + d) return false;
    }
  }
  return true;
}

TEST(VrdUnionCrop, BoxesMaskKeepsOnlyThePair) {
  const Scene s;
  UnionCropOptions o;
  o.size = 40;
  o.mask = CropMask::kBoxes;
  o.mean = {0, 0, 0};
  o.std = {1, 1, 1};
  std::vector<float> out(kUnionCropChannels * 40 * 40);
  masked_union_crop(s.image, s.subject, s.object, o, out.data());
  // union [10, 10, 90, 80]: x = 10 + (u + 0.5) * 2, y = 10 + (v + 0.5) * 1.75
  int checked = 0;
  for (int v = 0; v < 40; ++v) {
    for (int u = 0; u < 40; ++u) {
      const double x = 10 + (u + 0.5) * 2.0, y = 10 + (v + 0.5) * 1.75;
      const size_t at = static_cast<size_t>(v) * 40 + u;
      const float r = out[at], g = out[1600 + at], b = out[3200 + at];
      EXPECT_EQ(out[3 * 1600 + at], in(s.subject, x, y) ? 1.0f : 0.0f) << u << "," << v;
      EXPECT_EQ(out[4 * 1600 + at], in(s.object, x, y) ? 1.0f : 0.0f) << u << "," << v;
      if (!in(s.subject, x, y) && !in(s.object, x, y)) {
        EXPECT_EQ(r + g + b, 0.0f) << "outside the boxes must be black at " << u << "," << v;
        ++checked;
      } else if (clear_of_edges(s, x, y, 1.0)) {
        const bool red = in(s.subject, x, y);
        EXPECT_EQ(r, red ? 255.0f : 0.0f);
        EXPECT_EQ(g, 0.0f);
        EXPECT_EQ(b, red ? 0.0f : 255.0f);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 1400);
  // hand-computed: (0, 0) -> (11, 10.875) in the subject; (39, 0) -> (89, 10.875) in neither;
  // (20, 20) -> (51, 45.875) between the boxes: black
  EXPECT_EQ(out[0], 255.0f);
  EXPECT_EQ(out[3 * 1600], 1.0f);
  EXPECT_EQ(out[39] + out[1600 + 39] + out[3200 + 39], 0.0f);
  EXPECT_EQ(out[1600 + 20 * 40 + 20], 0.0f);
}

TEST(VrdUnionCrop, HullMaskKeepsTheSpaceBetweenTheBoxes) {
  const Scene s;
  UnionCropOptions o;
  o.size = 40;
  o.mask = CropMask::kHull;
  std::vector<float> out(kUnionCropChannels * 40 * 40);
  masked_union_crop(s.image, s.subject, s.object, o, out.data());
  const auto rgb = [&](int u, int v) {
    const size_t at = static_cast<size_t>(v) * 40 + u;
    return std::array<float, 3>{out[at] * o.std[0] + o.mean[0],
                                out[1600 + at] * o.std[1] + o.mean[1],
                                out[3200 + at] * o.std[2] + o.mean[2]};
  };
  // (20, 20) -> (51, 45.875): between the boxes, inside the hull: green is kept
  auto c = rgb(20, 20);
  EXPECT_NEAR(c[0], 0.0f, 1e-3);
  EXPECT_NEAR(c[1], 255.0f, 1e-3);
  // (39, 0) -> (89, 10.875): the union's top-right corner, outside the hull: black
  c = rgb(39, 0);
  EXPECT_NEAR(c[0] + c[1] + c[2], 0.0f, 1e-3);
  // (0, 39) -> (11, 78.875): bottom-left corner, outside the hull
  c = rgb(0, 39);
  EXPECT_NEAR(c[1], 0.0f, 1e-3);
  // hull edge from the subject's top-right (30, 10) to the object's top-right (90, 50): points
  // just below it are kept, just above are black. u = 24 -> x = 59; the edge is at y = 29.33.
  c = rgb(24, 11);  // y = 30.125: below the edge
  EXPECT_NEAR(c[1], 255.0f, 1e-3);
  c = rgb(24, 10);  // y = 28.375: above
  EXPECT_NEAR(c[1], 0.0f, 1e-3);
  // masks are the boxes, whatever the mask mode
  EXPECT_EQ(out[3 * 1600 + 20 * 40 + 20], 0.0f);
  EXPECT_EQ(out[4 * 1600 + 39 * 40 + 39], 1.0f);
}

TEST(VrdUnionCrop, NormalisationAndErrors) {
  const Scene s;
  UnionCropOptions o;
  o.size = 8;
  o.mask = CropMask::kBoxes;
  std::vector<float> out(kUnionCropChannels * 64);
  // the pair is the subject twice: every pixel inside it, red
  masked_union_crop(s.image, {12, 12, 28, 28}, {12, 12, 28, 28}, o, out.data());
  EXPECT_NEAR(out[9], (255.0f - o.mean[0]) / o.std[0], 1e-5);
  EXPECT_NEAR(out[64 + 9], (0.0f - o.mean[1]) / o.std[1], 1e-5);
  EXPECT_EQ(parse_crop_mask("boxes", "x"), CropMask::kBoxes);
  EXPECT_NE(error_of([] {
              parse_crop_mask("circle", "c.yaml: stage2.visual.mask");
            }).find("c.yaml: stage2.visual.mask: expected boxes or hull, got 'circle'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              masked_union_crop(s.image, {5, 5, 1, 9}, s.object, o, out.data());
            }).find("inverted box"),
            std::string::npos);
  cv::Mat gray(10, 10, CV_8UC1);
  EXPECT_NE(error_of([&] {
              masked_union_crop(gray, s.subject, s.object, o, out.data());
            }).find("expected an 8-bit BGR image"),
            std::string::npos);
}

}  // namespace
}  // namespace setdet
