#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "setdet/core/dedup/soft_nms.h"
#include "setdet/core/error.h"

namespace setdet {
namespace {

// 14 float32 boxes in pixels (box 9 = box 3, box 7 = box 3 shifted by 1.5), numpy
// default_rng(77); scores without ties.
const std::vector<float> kBoxes = {
    47.15593719482422,  33.070316314697266, 57.24115753173828,  56.9189567565918,
    14.633292198181152, 20.06719207763672,  27.238779067993164, 31.093860626220703,
    19.12141227722168,  23.40924072265625,  53.48366928100586,  39.59776306152344,
    48.078041076660156, 5.448098182678223,  82.4139633178711,   23.499011993408203,
    22.417463302612305, 47.479373931884766, 56.43296432495117,  70.73786926269531,
    45.520286560058594, 36.238502502441406, 75.64408874511719,  75.46662902832031,
    7.844870090484619,  21.590681076049805, 24.068981170654297, 50.52413558959961,
    49.578041076660156, 6.948098182678223,  83.9139633178711,   24.999011993408203,
    42.430870056152344, 9.652379035949707,  57.27073669433594,  42.646942138671875,
    48.078041076660156, 5.448098182678223,  82.4139633178711,   23.499011993408203,
    20.36322021484375,  21.1933536529541,   32.494224548339844, 45.35026168823242,
    23.289148330688477, 6.958459377288818,  59.890411376953125, 40.04658889770508,
    11.130483627319336, 45.29424285888672,  35.35389709472656,  82.92774963378906,
    4.551022529602051,  23.56401824951172,  29.250415802001953, 41.31674575805664};
const std::vector<float> kScores = {0.18487116694450378, 0.826827883720398,   0.19265864789485931,
                                    0.6660588979721069,  0.8693395853042603,  0.29632729291915894,
                                    0.7643342614173889,  0.16131921112537384, 0.08507122844457626,
                                    0.6922482848167419,  0.46010828018188477, 0.9536211490631104,
                                    0.939103901386261,   0.7692069411277771};

struct GoldenCase {
  const char* name;
  SoftNmsMethod method;
  double iou_threshold, sigma, min_score;
  std::vector<int64_t> indices;
  std::vector<double> scores;
};

// Golden values: mmcv.ops.soft_nms's CPU kernel (softnms_cpu in
// mmcv/ops/csrc/pytorch/cpu/nms.cpp, open-mmlab/mmcv 2.2.0, commit a8073c74bf83), compiled
// locally against Debian's LibTorch 1.13 and called with offset 0 on kBoxes / kScores.
const std::vector<GoldenCase> kGolden = {
    {"linear",
     SoftNmsMethod::kLinear,
     0.3,
     0.5,
     0.001,
     {11, 12, 4, 1, 13, 9, 10, 6, 5, 0, 2, 8, 7},
     {0.9536211490631104, 0.939103901386261, 0.8693395853042603, 0.826827883720398,
      0.7692069411277771, 0.6922482848167419, 0.46010828018188477, 0.40919196605682373,
      0.29632729291915894, 0.18487116694450378, 0.08321017026901245, 0.05436595529317856,
      0.0353773757815361}},
    {"gaussian",
     SoftNmsMethod::kGaussian,
     0.3,
     0.5,
     0.001,
     {11, 12, 1, 4, 6, 9, 13, 10, 5, 0, 2, 3, 8, 7},
     {0.9536211490631104, 0.939103901386261, 0.8249924182891846, 0.7928260564804077,
      0.7160541415214539, 0.6727681159973145, 0.4585975408554077, 0.3445245325565338,
      0.2833743989467621, 0.170408234000206, 0.10683447867631912, 0.08760462701320648,
      0.05349760875105858, 0.013348621316254139}},
    {"naive",
     SoftNmsMethod::kNaive,
     0.3,
     0.5,
     0.001,
     {11, 12, 4, 1, 13, 9, 10, 5, 0},
     {0.9536211490631104, 0.939103901386261, 0.8693395853042603, 0.826827883720398,
      0.7692069411277771, 0.6922482848167419, 0.46010828018188477, 0.29632729291915894,
      0.18487116694450378}},
    {"linear_strict",
     SoftNmsMethod::kLinear,
     0.1,
     0.5,
     0.2,
     {11, 12, 1, 4, 6, 9, 13, 5, 10},
     {0.9536211490631104, 0.939103901386261, 0.826827883720398, 0.6827553510665894,
      0.6322137713432312, 0.6095486283302307, 0.33080142736434937, 0.252575159072876,
      0.2050386518239975}},
    {"gaussian_wide",
     SoftNmsMethod::kGaussian,
     0.3,
     2.0,
     0.05,
     {11, 12, 4, 1, 13, 9, 6, 10, 3, 5, 0, 2, 7, 8},
     {0.9536211490631104, 0.939103901386261, 0.8495453596115112, 0.8263686895370483,
      0.7529581785202026, 0.6873260140419006, 0.6750228404998779, 0.42800620198249817,
      0.4011125862598419, 0.2930346131324768, 0.18114423751831055, 0.16625289618968964,
      0.08713708817958832, 0.07522137463092804}},
};

template <typename T>
void check_golden(double tol) {
  const std::vector<T> boxes(kBoxes.begin(), kBoxes.end());
  const std::vector<T> scores(kScores.begin(), kScores.end());
  for (const GoldenCase& c : kGolden) {
    SoftNmsOptions o;
    o.method = c.method;
    o.iou_threshold = c.iou_threshold;
    o.sigma = c.sigma;
    o.min_score = c.min_score;
    const auto r = soft_nms(boxes.data(), scores.data(), scores.size(), o);
    EXPECT_EQ(r.indices, c.indices) << c.name;
    ASSERT_EQ(r.scores.size(), c.scores.size()) << c.name;
    for (size_t i = 0; i < c.scores.size(); ++i) {
      EXPECT_NEAR(r.scores[i], c.scores[i], tol) << c.name << " " << i;
    }
  }
}

TEST(SoftNms, MatchesMmcvFloat) { check_golden<float>(1e-7); }

TEST(SoftNms, MatchesMmcvDouble) { check_golden<double>(1e-6); }

TEST(SoftNms, HandComputedLinearAndGaussian) {
  // IoU(0, 1) = 0.5, box 2 is disjoint
  const std::vector<double> b = {0, 0, 4, 1, 0, 0, 2, 1, 10, 10, 11, 11};
  const std::vector<double> s = {0.9, 0.8, 0.3};
  auto r = soft_nms(b.data(), s.data(), 3);
  ASSERT_EQ(r.indices, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(r.scores, (std::vector<double>{0.9, 0.8 * 0.5, 0.3}));
  SoftNmsOptions o;
  o.method = SoftNmsMethod::kGaussian;
  o.sigma = 0.5;
  r = soft_nms(b.data(), s.data(), 3, o);
  ASSERT_EQ(r.indices, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_DOUBLE_EQ(r.scores[1], 0.8 * std::exp(-0.25 / 0.5));
  o.sigma = 0.1;  // 0.8 * exp(-2.5) < 0.3: box 1 now comes last
  r = soft_nms(b.data(), s.data(), 3, o);
  ASSERT_EQ(r.indices, (std::vector<int64_t>{0, 2, 1}));
  EXPECT_DOUBLE_EQ(r.scores[2], 0.8 * std::exp(-0.25 / 0.1));
  // the decay reorders: 0.8 * 0.5 < 0.45 -> box 3 comes before box 1
  const std::vector<double> b4 = {0, 0, 4, 1, 0, 0, 2, 1, 10, 10, 11, 11, 20, 20, 21, 21};
  const std::vector<double> s4 = {0.9, 0.8, 0.3, 0.45};
  r = soft_nms(b4.data(), s4.data(), 4);
  EXPECT_EQ(r.indices, (std::vector<int64_t>{0, 3, 1, 2}));
}

TEST(SoftNms, MinScoreDropsEvenTheTopBox) {
  // mmcv issue 1726: mmcv returns box 0 here although its score is below min_score
  const std::vector<float> b = {0, 0, 1, 1, 5, 5, 6, 6};
  const std::vector<float> s = {0.0005f, 0.0002f};
  EXPECT_TRUE(soft_nms(b.data(), s.data(), 2).indices.empty());
  SoftNmsOptions o;
  o.min_score = 0.0003;
  const auto r = soft_nms(b.data(), s.data(), 2, o);
  EXPECT_EQ(r.indices, std::vector<int64_t>{0});
}

TEST(SoftNms, EmptyIdenticalTiesZeroAreaAndMaxOutput) {
  EXPECT_TRUE(soft_nms<float>(nullptr, nullptr, 0).indices.empty());
  // identical boxes: linear decays the others by 1 - 1 = 0; ties go to the lowest index
  const std::vector<float> b = {1, 1, 3, 3, 1, 1, 3, 3, 1, 1, 3, 3};
  const std::vector<float> s = {0.5f, 0.7f, 0.7f};
  auto r = soft_nms(b.data(), s.data(), 3);
  EXPECT_EQ(r.indices, std::vector<int64_t>{1});
  // zero-area boxes have IoU 0: never decayed, never decay others
  const std::vector<float> z = {2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 4, 4};
  r = soft_nms(z.data(), s.data(), 3);
  EXPECT_EQ(r.indices, (std::vector<int64_t>{1, 2, 0}));
  EXPECT_EQ(r.scores, (std::vector<float>{0.7f, 0.7f, 0.5f}));
  SoftNmsOptions o;
  o.max_output = 2;
  r = soft_nms(z.data(), s.data(), 3, o);
  EXPECT_EQ(r.indices, (std::vector<int64_t>{1, 2}));
  // naive with threshold 0: IoU 0 >= 0 zeroes every other box
  o = SoftNmsOptions();
  o.method = SoftNmsMethod::kNaive;
  o.iou_threshold = 0;
  r = soft_nms(z.data(), s.data(), 3, o);
  EXPECT_EQ(r.indices, std::vector<int64_t>{1});
}

TEST(SoftNms, RejectsBadInput) {
  const std::vector<float> b = {0, 0, 1, 1};
  std::vector<float> s = {0.5f};
  auto expect_message = [&](const std::vector<float>& boxes, const SoftNmsOptions& o,
                            const std::string& message) {
    try {
      soft_nms(boxes.data(), s.data(), 1, o);
      ADD_FAILURE() << "expected setdet::Error: " << message;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "soft_nms: " + message);
    }
  };
  SoftNmsOptions o;
  o.iou_threshold = 1.5;
  expect_message(b, o, "iou_threshold must be in [0, 1], got 1.5");
  o = SoftNmsOptions();
  o.sigma = -1;
  expect_message(b, o, "sigma must be a finite number > 0, got -1");
  o = SoftNmsOptions();
  o.min_score = std::nan("");
  expect_message(b, o, "min_score must be finite, got nan");
  std::vector<float> bad = b;
  bad[3] = std::numeric_limits<float>::infinity();
  expect_message(bad, {}, "boxes[0] has a non-finite coordinate (inf)");
  s[0] = std::numeric_limits<float>::quiet_NaN();
  expect_message(b, {}, "scores[0] is not finite (nan)");
  try {
    parse_soft_nms_method("soft");
    ADD_FAILURE() << "expected setdet::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "soft_nms: method must be one of \"linear\", \"gaussian\", \"naive\", got \"soft\"");
  }
  EXPECT_EQ(parse_soft_nms_method("gaussian"), SoftNmsMethod::kGaussian);
  EXPECT_EQ(parse_soft_nms_method("naive"), SoftNmsMethod::kNaive);
  EXPECT_EQ(parse_soft_nms_method("linear"), SoftNmsMethod::kLinear);
}

}  // namespace
}  // namespace setdet
