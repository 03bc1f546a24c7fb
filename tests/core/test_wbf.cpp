#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "setdet/core/dedup/wbf.h"
#include "setdet/core/error.h"

namespace setdet {
namespace {

// Three models' detections, normalised xyxy. Includes a box outside [0, 1] and inverted
// (model 0, #5), a negative coordinate (model 2, #1), a zero-width box (model 1, #4) and a
// score below 0.3 for the skip_box_thr case.
const std::vector<std::vector<double>> kBoxes = {
    {0.00, 0.51, 0.81, 0.91, 0.10, 0.31, 0.71, 0.61, 0.01, 0.32, 0.83, 0.93,
     0.02, 0.53, 0.11, 0.94, 0.03, 0.24, 0.12, 0.35, 1.2,  0.5,  0.9,  0.1},
    {0.04, 0.56, 0.84, 0.92, 0.12, 0.33, 0.72, 0.64, 0.38, 0.66,
     0.79, 0.95, 0.08, 0.49, 0.21, 0.89, 0.3,  0.3,  0.3,  0.6},
    {0.02, 0.50, 0.80, 0.90, -0.1, 0.30, 0.70, 0.62, 0.40, 0.65, 0.80, 0.96, 0.09, 0.48, 0.20,
     0.90}};
const std::vector<std::vector<double>> kScores = {
    {0.9, 0.8, 0.2, 0.4, 0.7, 0.65}, {0.5, 0.8, 0.7, 0.3, 0.9}, {0.55, 0.85, 0.6, 0.05}};
const std::vector<std::vector<int64_t>> kLabels = {
    {0, 1, 0, 1, 1, 0}, {1, 1, 1, 1, 0}, {1, 1, 0, 1}};

template <typename T>
struct Models {
  std::vector<std::vector<T>> boxes, scores;
  std::vector<WbfInput<T>> inputs;
  Models() {
    for (size_t t = 0; t < kBoxes.size(); ++t) {
      boxes.emplace_back(kBoxes[t].begin(), kBoxes[t].end());
      scores.emplace_back(kScores[t].begin(), kScores[t].end());
    }
    for (size_t t = 0; t < kBoxes.size(); ++t) {
      inputs.push_back({boxes[t].data(), scores[t].data(), kLabels[t].data(), scores[t].size()});
    }
  }
};

struct GoldenCase {
  const char* name;
  WbfConfType conf_type;
  bool allows_overflow;
  std::vector<double> weights;
  double iou_thr, skip_box_thr;
  std::vector<double> boxes, scores;
  std::vector<int64_t> labels;
};

// Golden values: ensemble_boxes.weighted_boxes_fusion from ZFTurbo/Weighted-Boxes-Fusion
// (ensemble_boxes 1.0.9, commit 96880f3df8d45ac21dce8d243fcfab420cadda47) run with numpy 1.24
// on kBoxes / kScores / kLabels as float64 lists.
const std::vector<GoldenCase>& golden_cases() {
  static const std::vector<GoldenCase> cases = {
      {"avg",
       WbfConfType::kAvg,
       false,
       {2, 1, 1},
       0.55,
       0.0,
       {0.07876922190189362,
        0.3123076856136322,
        0.7098461985588074,
        0.6200000047683716,
        0.001818181830458343,
        0.47545453906059265,
        0.813636302947998,
        0.913636326789856,
        0.03,
        0.24,
        0.12,
        0.35,
        0.9,
        0.1,
        1.0,
        0.5,
        0.029523810371756554,
        0.5285714864730835,
        0.8190476894378662,
        0.9095238447189331,
        0.02,
        0.53,
        0.11,
        0.94,
        0.38,
        0.66,
        0.79,
        0.95,
        0.4,
        0.65,
        0.8,
        0.96,
        0.08142857253551483,
        0.488571435213089,
        0.2085714340209961,
        0.891428530216217},
       {0.8125000298023224, 0.550000011920929, 0.35, 0.325, 0.26249998807907104, 0.2, 0.175, 0.15,
        0.08749999850988388},
       {1, 0, 1, 0, 1, 1, 1, 0, 1}},
      {"avg_overflow",
       WbfConfType::kAvg,
       true,
       {2, 1, 1},
       0.55,
       0.0,
       {0.07876922190189362,
        0.3123076856136322,
        0.7098461985588074,
        0.6200000047683716,
        0.001818181830458343,
        0.47545453906059265,
        0.813636302947998,
        0.913636326789856,
        0.03,
        0.24,
        0.12,
        0.35,
        0.9,
        0.1,
        1.0,
        0.5,
        0.029523810371756554,
        0.5285714864730835,
        0.8190476894378662,
        0.9095238447189331,
        0.02,
        0.53,
        0.11,
        0.94,
        0.38,
        0.66,
        0.79,
        0.95,
        0.4,
        0.65,
        0.8,
        0.96,
        0.08142857253551483,
        0.488571435213089,
        0.2085714340209961,
        0.891428530216217},
       {0.8125000298023224, 0.550000011920929, 0.35, 0.325, 0.26249998807907104, 0.2, 0.175, 0.15,
        0.08749999850988388},
       {1, 0, 1, 0, 1, 1, 1, 0, 1}},
      {"max",
       WbfConfType::kMax,
       false,
       {2, 1, 1},
       0.55,
       0.0,
       {0.001818181830458343,
        0.47545453906059265,
        0.813636302947998,
        0.913636326789856,
        0.07876922190189362,
        0.3123076856136322,
        0.7098461985588074,
        0.6200000047683716,
        0.03,
        0.24,
        0.12,
        0.35,
        0.9,
        0.1,
        1.0,
        0.5,
        0.02,
        0.53,
        0.11,
        0.94,
        0.38,
        0.66,
        0.79,
        0.95,
        0.4,
        0.65,
        0.8,
        0.96,
        0.029523810371756554,
        0.5285714864730835,
        0.8190476894378662,
        0.9095238447189331,
        0.08142857253551483,
        0.488571435213089,
        0.2085714340209961,
        0.891428530216217},
       {0.8999999761581421, 0.800000011920929, 0.7, 0.65, 0.4, 0.35, 0.3, 0.2750000059604645,
        0.15000000596046448},
       {0, 1, 1, 0, 1, 1, 0, 1, 1}},
      {"box_and_model_avg",
       WbfConfType::kBoxAndModelAvg,
       false,
       {2, 1, 1},
       0.55,
       0.0,
       {0.07876922190189362,
        0.3123076856136322,
        0.7098461985588074,
        0.6200000047683716,
        0.03,
        0.24,
        0.12,
        0.35,
        0.9,
        0.1,
        1.0,
        0.5,
        0.001818181830458343,
        0.47545453906059265,
        0.813636302947998,
        0.913636326789856,
        0.029523810371756554,
        0.5285714864730835,
        0.8190476894378662,
        0.9095238447189331,
        0.02,
        0.53,
        0.11,
        0.94,
        0.38,
        0.66,
        0.79,
        0.95,
        0.4,
        0.65,
        0.8,
        0.96,
        0.08142857253551483,
        0.488571435213089,
        0.2085714340209961,
        0.891428530216217},
       {0.8125000298023224, 0.35, 0.325, 0.2750000059604645, 0.26249998807907104, 0.2, 0.175, 0.15,
        0.08749999850988388},
       {1, 1, 0, 0, 1, 1, 1, 0, 1}},
      {"absent_model_aware_avg",
       WbfConfType::kAbsentModelAware,
       false,
       {2, 1, 1},
       0.55,
       0.0,
       {0.07876922190189362,
        0.3123076856136322,
        0.7098461985588074,
        0.6200000047683716,
        0.001818181830458343,
        0.47545453906059265,
        0.813636302947998,
        0.913636326789856,
        0.03,
        0.24,
        0.12,
        0.35,
        0.9,
        0.1,
        1.0,
        0.5,
        0.029523810371756554,
        0.5285714864730835,
        0.8190476894378662,
        0.9095238447189331,
        0.02,
        0.53,
        0.11,
        0.94,
        0.38,
        0.66,
        0.79,
        0.95,
        0.4,
        0.65,
        0.8,
        0.96,
        0.08142857253551483,
        0.488571435213089,
        0.2085714340209961,
        0.891428530216217},
       {0.8125000298023224, 0.36666667461395264, 0.35, 0.325, 0.26249998807907104, 0.2, 0.175, 0.15,
        0.08749999850988388},
       {1, 0, 1, 0, 1, 1, 1, 0, 1}},
      {"avg_unweighted_thr",
       WbfConfType::kAvg,
       false,
       {},
       0.3,
       0.3,
       {0.07183673232793808,
        0.3130612373352051,
        0.7097958922386169,
        0.6232653260231018,
        0.1599999964237213,
        0.5659999847412109,
        0.8059999942779541,
        0.9300000071525574,
        0.029523810371756554,
        0.5285714864730835,
        0.8190476894378662,
        0.9095238447189331,
        0.03,
        0.24,
        0.12,
        0.35,
        0.38,
        0.66,
        0.79,
        0.95,
        0.9,
        0.1,
        1.0,
        0.5,
        0.02,
        0.53,
        0.11,
        0.94,
        0.08,
        0.49,
        0.21,
        0.89},
       {0.8166666626930237, 0.5, 0.34999998410542804, 0.2333333333333333, 0.2333333333333333,
        0.21666666666666667, 0.13333333333333333, 0.09999999999999999},
       {1, 0, 1, 1, 1, 0, 1, 1}},
  };
  return cases;
}

template <typename T>
void check_golden(double tol) {
  Models<T> m;
  for (const GoldenCase& c : golden_cases()) {
    WbfOptions o;
    o.conf_type = c.conf_type;
    o.allows_overflow = c.allows_overflow;
    o.iou_threshold = c.iou_thr;
    o.skip_box_threshold = c.skip_box_thr;
    const WbfResult<T> r = weighted_boxes_fusion(m.inputs, c.weights, o);
    ASSERT_EQ(r.labels, c.labels) << c.name;
    ASSERT_EQ(r.scores.size(), c.scores.size()) << c.name;
    ASSERT_EQ(r.boxes.size(), c.boxes.size()) << c.name;
    for (size_t i = 0; i < c.scores.size(); ++i) {
      EXPECT_NEAR(r.scores[i], c.scores[i], tol) << c.name << " score " << i;
    }
    for (size_t i = 0; i < c.boxes.size(); ++i) {
      EXPECT_NEAR(r.boxes[i], c.boxes[i], tol) << c.name << " box coordinate " << i;
    }
  }
}

TEST(WeightedBoxesFusion, MatchesEnsembleBoxesDouble) { check_golden<double>(1e-12); }

TEST(WeightedBoxesFusion, MatchesEnsembleBoxesFloat) { check_golden<float>(2e-7); }

TEST(WeightedBoxesFusion, ParsesConfType) {
  EXPECT_EQ(parse_wbf_conf_type("avg"), WbfConfType::kAvg);
  EXPECT_EQ(parse_wbf_conf_type("max"), WbfConfType::kMax);
  EXPECT_EQ(parse_wbf_conf_type("box_and_model_avg"), WbfConfType::kBoxAndModelAvg);
  EXPECT_EQ(parse_wbf_conf_type("absent_model_aware_avg"), WbfConfType::kAbsentModelAware);
  try {
    parse_wbf_conf_type("mean");
    FAIL() << "expected setdet::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "weighted_boxes_fusion: conf_type must be one of \"avg\", \"max\", "
              "\"box_and_model_avg\", \"absent_model_aware_avg\", got \"mean\"");
  }
}

TEST(WeightedBoxesFusion, EmptyInputs) {
  EXPECT_TRUE(weighted_boxes_fusion<float>({}, {}).scores.empty());
  const std::vector<WbfInput<float>> empty_models(3);
  const auto r = weighted_boxes_fusion(empty_models, {1, 2, 3});
  EXPECT_TRUE(r.boxes.empty());
  EXPECT_TRUE(r.scores.empty());
  EXPECT_TRUE(r.labels.empty());
  // everything skipped or zero-area
  const std::vector<float> b = {0.1f, 0.1f, 0.1f, 0.5f, 0.2f, 0.2f, 0.6f, 0.6f};
  const std::vector<float> s = {0.9f, 0.1f};
  const std::vector<int64_t> l = {0, 0};
  WbfOptions o;
  o.skip_box_threshold = 0.5;
  EXPECT_TRUE(
      weighted_boxes_fusion<float>({{b.data(), s.data(), l.data(), 2}}, {}, o).scores.empty());
}

TEST(WeightedBoxesFusion, OneBoxIsClippedAndRescaled) {
  const std::vector<double> b = {0.8, 0.9, -0.5, 0.2};  // inverted x, y2 < y1
  const std::vector<double> s = {0.6};
  const std::vector<int64_t> l = {7};
  const WbfInput<double> in{b.data(), s.data(), l.data(), 1};
  const auto r = weighted_boxes_fusion<double>({in, WbfInput<double>()}, {3, 1});
  ASSERT_EQ(r.labels, std::vector<int64_t>{7});
  EXPECT_EQ(r.boxes, (std::vector<double>{0.0, 0.2, 0.8, 0.9}));
  // avg: 0.6 * 3 (weighted score) * min(2 models, 1 box) / (3 + 1)
  EXPECT_DOUBLE_EQ(r.scores[0], 0.6 * 3 * 1 / 4);
}

TEST(WeightedBoxesFusion, IdenticalBoxesFuseToThemselves) {
  const std::vector<float> b = {0.25f, 0.25f, 0.75f, 0.5f};
  const std::vector<float> s1 = {0.5f}, s2 = {0.7f};
  const std::vector<int64_t> l = {1};
  const auto r = weighted_boxes_fusion<float>(
      {{b.data(), s1.data(), l.data(), 1}, {b.data(), s2.data(), l.data(), 1}}, {});
  ASSERT_EQ(r.scores.size(), 1u);
  for (int k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(r.boxes[k], b[k]) << k;  // float32 weighted mean
  EXPECT_FLOAT_EQ(r.scores[0], 0.6f);  // mean of 0.5, 0.7 times min(2, 2) / 2
}

TEST(WeightedBoxesFusion, ZeroScoresNeverGiveNan) {
  const std::vector<double> b = {0.1, 0.1, 0.5, 0.5, 0.12, 0.1, 0.5, 0.52};
  const std::vector<double> s = {0.0, 0.0};
  const std::vector<int64_t> l = {0, 0};
  const auto r = weighted_boxes_fusion<double>({{b.data(), s.data(), l.data(), 2}}, {});
  ASSERT_EQ(r.scores.size(), 1u);
  EXPECT_EQ(r.scores[0], 0.0);
  EXPECT_NEAR(r.boxes[0], 0.11, 1e-12);
  EXPECT_NEAR(r.boxes[3], 0.51, 1e-12);
}

TEST(WeightedBoxesFusion, RejectsBadInput) {
  const std::vector<float> b = {0.1f, 0.1f, 0.5f, 0.5f};
  std::vector<float> s = {0.5f};
  const std::vector<int64_t> l = {0};
  auto expect_message = [&](const std::vector<WbfInput<float>>& models,
                            const std::vector<double>& w, const WbfOptions& o,
                            const std::string& message) {
    try {
      weighted_boxes_fusion(models, w, o);
      ADD_FAILURE() << "expected setdet::Error: " << message;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "weighted_boxes_fusion: " + message);
    }
  };
  const WbfInput<float> in{b.data(), s.data(), l.data(), 1};
  expect_message({in, in}, {1.0}, {},
                 "weights must be empty or have one entry per model (2), got 1");
  expect_message({in, in}, {1.0, 0.0}, {}, "weights[1] must be a finite number > 0, got 0");
  WbfOptions o;
  o.iou_threshold = 1.5;
  expect_message({in}, {}, o, "iou_threshold must be in [0, 1], got 1.5");
  s[0] = std::numeric_limits<float>::quiet_NaN();
  expect_message({in, in}, {}, {}, "model 0 scores[0] is not finite (nan)");
  s[0] = 0.5f;
  std::vector<float> bad = b;
  bad[2] = std::numeric_limits<float>::infinity();
  expect_message({in, {bad.data(), s.data(), l.data(), 1}}, {}, {},
                 "model 1 boxes[0] has a non-finite coordinate (inf)");
  expect_message({{nullptr, nullptr, nullptr, 2}}, {}, {},
                 "model 0 has n = 2 but null boxes, scores or labels");
}

}  // namespace
}  // namespace setdet
