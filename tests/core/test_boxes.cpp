#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "setdet/core/boxes.h"
#include "setdet/core/error.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

const std::vector<double> kA = {0, 0, 10, 10, 5, 5, 15, 15, 0, 0, 0, 0, 20, 20, 30, 40};
const std::vector<double> kB = {0, 0, 10, 10, 2, 3, 7, 12, 10, 10, 20, 20};

TEST(BoxFormat, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_box_format("xyxy"), BoxFormat::kXYXY);
  EXPECT_EQ(parse_box_format("xywh"), BoxFormat::kXYWH);
  EXPECT_EQ(parse_box_format("cxcywh"), BoxFormat::kCXCYWH);
  try {
    parse_box_format("XYXY", "box_format");
    FAIL() << "expected setdet::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "box_format: expected one of \"xyxy\", \"xywh\", \"cxcywh\", got \"XYXY\"");
  }
}

TEST(ConvertBoxes, HandComputedAndRoundTrip) {
  const std::vector<float> xyxy = {1, 2, 5, 10, -3, -1, 0, 0};
  std::vector<float> xywh(8), cxcywh(8), back(8);
  convert_boxes(xyxy.data(), xywh.data(), 2, BoxFormat::kXYXY, BoxFormat::kXYWH);
  EXPECT_EQ(xywh, (std::vector<float>{1, 2, 4, 8, -3, -1, 3, 1}));
  convert_boxes(xyxy.data(), cxcywh.data(), 2, BoxFormat::kXYXY, BoxFormat::kCXCYWH);
  EXPECT_EQ(cxcywh, (std::vector<float>{3, 6, 4, 8, -1.5f, -0.5f, 3, 1}));
  convert_boxes(xywh.data(), back.data(), 2, BoxFormat::kXYWH, BoxFormat::kCXCYWH);
  EXPECT_EQ(back, cxcywh);
  convert_boxes(cxcywh.data(), back.data(), 2, BoxFormat::kCXCYWH, BoxFormat::kXYWH);
  EXPECT_EQ(back, xywh);
  // in place
  std::vector<float> inplace = cxcywh;
  convert_boxes(inplace.data(), inplace.data(), 2, BoxFormat::kCXCYWH, BoxFormat::kXYXY);
  EXPECT_EQ(inplace, xyxy);
  convert_boxes(inplace.data(), inplace.data(), 0, BoxFormat::kCXCYWH, BoxFormat::kXYXY);
}

TEST(BoxArea, ZeroForDegenerateBoxes) {
  const std::vector<double> b = {0, 0, 2, 3, 1, 1, 1, 5, 4, 4, 2, 2, 0, 0, 5, -1};
  std::vector<double> area(4);
  box_area_all(b.data(), 4, area.data());
  EXPECT_EQ(area, (std::vector<double>{6, 0, 0, 0}));
}

// Golden values: torchvision 0.14.1 (Debian python3-torchvision) box_iou, generalized_box_iou,
// distance_box_iou on kA x kB in float64.
TEST(BoxIou, MatchesTorchvision) {
  const std::vector<double> expected = {1.0,
                                        0.31818181818181818,
                                        0.0,
                                        0.14285714285714285,
                                        0.10687022900763359,
                                        0.14285714285714285,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0,
                                        0};
  std::vector<double> out(12);
  box_iou_matrix(kA.data(), 4, kB.data(), 3, out.data());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-15) << i;
  EXPECT_DOUBLE_EQ(box_iou(&kA[4], &kB[0]), expected[3]);
}

TEST(GeneralizedBoxIou, MatchesTorchvision) {
  const std::vector<double> expected = {1.0,
                                        0.23484848484848486,
                                        -0.5,
                                        -0.07936507936507936,
                                        -0.05338618124877668,
                                        -0.07936507936507936,
                                        0.0,
                                        -0.46428571428571430,
                                        -0.75,
                                        -0.75,
                                        -0.76351351351351349,
                                        -0.5};
  std::vector<double> out(12);
  generalized_box_iou_matrix(kA.data(), 4, kB.data(), 3, out.data());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-15) << i;
}

TEST(DistanceBoxIou, MatchesTorchvision) {
  const std::vector<double> expected = {1.0,
                                        0.29154247393044086,
                                        -0.24999999996875000,
                                        0.03174603177072310,
                                        -0.00974318948546116,
                                        0.03174603177072310,
                                        -0.24999999987500002,
                                        -0.39637305678944401,
                                        -0.56249999992968758,
                                        -0.40999999998360004,
                                        -0.43032977239060244,
                                        -0.24999999998076922};
  std::vector<double> out(12);
  distance_box_iou_matrix(kA.data(), 4, kB.data(), 3, out.data());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-15) << i;
}

TEST(BoxIou, ZeroAreaBoxesGiveZeroNeverNan) {
  // a point, a segment, an inverted box, and two identical points
  const std::vector<float> a = {3, 3, 3, 3, 0, 5, 10, 5, 8, 8, 2, 2};
  const std::vector<float> b = {0, 0, 10, 10, 3, 3, 3, 3, 0, 5, 10, 5};
  std::vector<float> iou(9), giou(9), diou(9);
  box_iou_matrix(a.data(), 3, b.data(), 3, iou.data());
  generalized_box_iou_matrix(a.data(), 3, b.data(), 3, giou.data());
  distance_box_iou_matrix(a.data(), 3, b.data(), 3, diou.data());
  for (size_t i = 0; i < 9; ++i) {
    EXPECT_EQ(iou[i], 0.0f) << i;
    EXPECT_FALSE(std::isnan(giou[i])) << i;
    EXPECT_FALSE(std::isnan(diou[i])) << i;
  }
  // identical points: IoU 0, enclosing area 0 -> GIoU 0; DIoU 0 - 0 / eps = 0
  EXPECT_EQ(giou[1], 0.0f);
  EXPECT_EQ(diou[1], 0.0f);
  EXPECT_EQ(box_iou(&a[0], &b[4]), 0.0f);
}

TEST(BoxIou, IntegerCoordinatesExact) {
  const std::vector<float> a = {0, 0, 4, 4};
  const std::vector<float> b = {2, 0, 6, 4, 4, 0, 8, 4, 1, 1, 3, 3};
  std::vector<float> out(3);
  box_iou_matrix(a.data(), 1, b.data(), 3, out.data());
  EXPECT_FLOAT_EQ(out[0], 8.0f / 24.0f);
  EXPECT_EQ(out[1], 0.0f);  // touching edges
  EXPECT_FLOAT_EQ(out[2], 4.0f / 16.0f);
}

TEST(BoxIou, ThreadCountDoesNotChangeResult) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0, 100);
  std::vector<float> a(4 * 300), b(4 * 200);
  for (auto* v : {&a, &b}) {
    for (size_t i = 0; i < v->size(); i += 4) {
      const float x = u(rng), y = u(rng);
      (*v)[i] = x, (*v)[i + 1] = y, (*v)[i + 2] = x + u(rng) / 4, (*v)[i + 3] = y + u(rng) / 4;
    }
  }
  std::vector<float> one(300 * 200), many(300 * 200);
  set_num_threads(1);
  box_iou_matrix(a.data(), 300, b.data(), 200, one.data());
  set_num_threads(4);
  box_iou_matrix(a.data(), 300, b.data(), 200, many.data());
  set_num_threads(0);
  EXPECT_EQ(one, many);
  for (size_t i = 0; i < 300; ++i) {
    for (size_t j = 0; j < 200; ++j) {
      ASSERT_EQ(one[i * 200 + j], box_iou(&a[4 * i], &b[4 * j]));
    }
  }
}

TEST(BoxIou, EmptyInputsWriteNothing) {
  std::vector<float> out = {42.0f};
  const std::vector<float> a = {0, 0, 1, 1};
  box_iou_matrix<float>(nullptr, 0, a.data(), 1, out.data());
  box_iou_matrix<float>(a.data(), 1, nullptr, 0, out.data());
  generalized_box_iou_matrix<float>(nullptr, 0, a.data(), 1, out.data());
  distance_box_iou_matrix<float>(a.data(), 1, nullptr, 0, out.data());
  box_area_all<float>(nullptr, 0, out.data());
  EXPECT_EQ(out[0], 42.0f);
}

}  // namespace
}  // namespace setdet
