#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "point_testing.h"
#include "setdet/assign/fcos_assigner.h"
#include "setdet/config/config.h"

namespace setdet {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

using test_util::grid;
using test_util::point_index;
using test_util::positive_indices;

TEST(FCOSAssigner, CentreSamplingKeepsPointsWithinRadiusTimesStride) {
  // One level, stride 8, points at 4, 12, 20, ..., 60. GT [0, 0, 32, 32] has its centre at
  // (16, 16); radius 1.5 * 8 = 12 keeps x, y in {12, 20} (|4 - 16| = 12 is not < 12).
  const PointSet ps = grid({8}, {8});
  FCOSAssigner assigner(FCOSAssignerOptions().regress_ranges({{-1, kInf}}));
  const auto t = assigner.assign(ps, {torch::tensor({{0.f, 0.f, 32.f, 32.f}})},
                                 {torch::tensor({3}, torch::kLong)}, 5);
  const std::vector<int64_t> expected{point_index(ps, 12, 12), point_index(ps, 20, 12),
                                      point_index(ps, 12, 20), point_index(ps, 20, 20)};
  EXPECT_EQ(positive_indices(t, 0, 5), expected);
  EXPECT_EQ(t.num_positives, 4);
  const int64_t p = point_index(ps, 12, 12);
  EXPECT_EQ(t.labels[0][p].item<int64_t>(), 3);
  EXPECT_EQ(t.matched[0][p].item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(t.distances[0][p], torch::tensor({12.f, 12.f, 20.f, 20.f})));
  EXPECT_NEAR(t.centerness[0][p].item<float>(), 0.6f, 1e-6);  // sqrt(12/20 * 12/20)
  EXPECT_EQ(t.labels[0][point_index(ps, 4, 4)].item<int64_t>(), 5);
  EXPECT_EQ(t.centerness[0][point_index(ps, 4, 4)].item<float>(), 0.f);
}

TEST(FCOSAssigner, WithoutCentreSamplingEveryPointInsideTheBoxIsPositive) {
  const PointSet ps = grid({8}, {8});
  FCOSAssigner assigner(FCOSAssignerOptions().regress_ranges({{-1, kInf}}).center_sampling(false));
  const auto t = assigner.assign(ps, {torch::tensor({{0.f, 0.f, 32.f, 32.f}})},
                                 {torch::tensor({0}, torch::kLong)}, 2);
  EXPECT_EQ(t.num_positives, 16);  // x, y in {4, 12, 20, 28}
}

TEST(FCOSAssigner, LevelChosenByRegressRange) {
  // Levels: stride 8 (8x8 points) and stride 16 (4x4 points); ranges [-1, 32] and [32, inf].
  const PointSet ps = grid({8, 16}, {8, 4});
  FCOSAssigner assigner(FCOSAssignerOptions().regress_ranges({{-1, 32}, {32, kInf}}));
  // Large GT: level-0 candidates (28 or 36, 28 or 36) have max distance 36 > 32; level-1
  // candidates (24 or 40) have max distance 40, in [32, inf].
  const auto big = assigner.assign(ps, {torch::tensor({{0.f, 0.f, 64.f, 64.f}})},
                                   {torch::tensor({1}, torch::kLong)}, 2);
  for (int64_t i : positive_indices(big, 0, 2)) EXPECT_GE(i, 64) << "level-0 point " << i;
  EXPECT_EQ(big.num_positives, 4);
  // Small GT [24, 24, 40, 40]: level-0 points (28|36, 28|36), max distance 12 <= 32.
  const auto small = assigner.assign(ps, {torch::tensor({{24.f, 24.f, 40.f, 40.f}})},
                                     {torch::tensor({1}, torch::kLong)}, 2);
  const std::vector<int64_t> expected{point_index(ps, 28, 28), point_index(ps, 36, 28),
                                      point_index(ps, 28, 36), point_index(ps, 36, 36)};
  EXPECT_EQ(positive_indices(small, 0, 2), expected);
}

TEST(FCOSAssigner, AmbiguousPointTakesTheSmallestGt) {
  const PointSet ps = grid({8}, {8});
  FCOSAssigner assigner(FCOSAssignerOptions().regress_ranges({{-1, kInf}}).center_sampling(false));
  // The small box (area 1024) is listed first in image 0 and last in image 1.
  const auto small = torch::tensor({{8.f, 8.f, 40.f, 40.f}});
  const auto big = torch::tensor({{0.f, 0.f, 64.f, 64.f}});
  const auto t = assigner.assign(
      ps, {torch::cat({small, big}), torch::cat({big, small})},
      {torch::tensor({0, 1}, torch::kLong), torch::tensor({1, 0}, torch::kLong)}, 2);
  const int64_t inside_both = point_index(ps, 20, 20);
  const int64_t big_only = point_index(ps, 52, 52);
  EXPECT_EQ(t.labels[0][inside_both].item<int64_t>(), 0);
  EXPECT_EQ(t.matched[0][inside_both].item<int64_t>(), 0);
  EXPECT_EQ(t.labels[1][inside_both].item<int64_t>(), 0);
  EXPECT_EQ(t.matched[1][inside_both].item<int64_t>(), 1);
  EXPECT_EQ(t.labels[0][big_only].item<int64_t>(), 1);
  EXPECT_TRUE(torch::equal(t.distances[1][inside_both], torch::tensor({12.f, 12.f, 20.f, 20.f})));
}

TEST(FCOSAssigner, EmptyGtAndEmptyBatch) {
  const PointSet ps = grid({8}, {4});
  FCOSAssigner assigner(FCOSAssignerOptions().regress_ranges({{-1, kInf}}));
  const auto t =
      assigner.assign(ps, {torch::zeros({0, 4}), torch::tensor({{0.f, 0.f, 16.f, 16.f}})},
                      {torch::zeros({0}, torch::kLong), torch::tensor({2}, torch::kLong)}, 3);
  EXPECT_EQ(positive_indices(t, 0, 3).size(), 0u);
  EXPECT_GT(positive_indices(t, 1, 3).size(), 0u);
  const auto none =
      assigner.assign(ps, {torch::zeros({0, 4})}, {torch::zeros({0}, torch::kLong)}, 3);
  EXPECT_EQ(none.num_positives, 0);
  EXPECT_TRUE((none.labels == 3).all().item<bool>());
  EXPECT_TRUE((none.matched == -1).all().item<bool>());
  EXPECT_EQ(none.distances.sizes().vec(), (std::vector<int64_t>{1, 16, 4}));
}

// Slow per-point, per-GT reference of the same rule.
TEST(FCOSAssigner, MatchesAScalarReferenceOnRandomCases) {
  const PointSet ps = grid({8, 16, 32}, {16, 8, 4});
  const RegressRanges ranges{{-1, 24}, {24, 48}, {48, kInf}};
  FCOSAssigner assigner(FCOSAssignerOptions().regress_ranges(ranges));
  for (int seed = 0; seed < 20; ++seed) {
    torch::manual_seed(seed);
    const int64_t n = seed % 7;
    const auto xy = torch::rand({n, 2}) * 100, wh = torch::rand({n, 2}) * 90 + 2;
    const auto boxes = torch::cat({xy, xy + wh}, 1);
    const auto labels = torch::randint(0, 4, {n}, torch::kLong);
    const auto t = assigner.assign(ps, {boxes}, {labels}, 4);
    int64_t start = 0;
    for (size_t l = 0; l < ps.strides.size(); ++l) {
      for (int64_t p = start; p < start + ps.num_points[l]; ++p) {
        const float x = ps.points[p][0].item<float>(), y = ps.points[p][1].item<float>();
        const float radius = 1.5f * static_cast<float>(ps.strides[l]);
        int64_t best = -1;
        float best_area = std::numeric_limits<float>::infinity();
        for (int64_t g = 0; g < n; ++g) {
          const auto b = boxes[g];
          const float x1 = b[0].item<float>(), y1 = b[1].item<float>(), x2 = b[2].item<float>(),
                      y2 = b[3].item<float>();
          const float d[4] = {x - x1, y - y1, x2 - x, y2 - y};
          const float mn = std::min({d[0], d[1], d[2], d[3]}),
                      mx = std::max({d[0], d[1], d[2], d[3]});
          const bool centre =
              std::abs(x - (x1 + x2) * 0.5f) < radius && std::abs(y - (y1 + y2) * 0.5f) < radius;
          const bool in_range = mx >= ranges[l].first && mx <= ranges[l].second;
          const float area = (x2 - x1) * (y2 - y1);
          if (mn > 0 && centre && in_range && area < best_area) {
            best = g;
            best_area = area;
          }
        }
        ASSERT_EQ(t.matched[0][p].item<int64_t>(), best) << "seed " << seed << " point " << p;
        ASSERT_EQ(t.labels[0][p].item<int64_t>(), best < 0 ? 4 : labels[best].item<int64_t>());
      }
      start += ps.num_points[l];
    }
  }
}

TEST(FCOSAssigner, ConfigAndInputErrors) {
  const auto cfg = Config::parse(
      "{a: {type: FCOSAssigner, regress_ranges: [[-1, 64], [64, .inf]], center_sample_radius: "
      "2.5}}",
      "a.yaml")["a"];
  auto built = PointAssignerRegistry().build(cfg);
  auto* fa = dynamic_cast<FCOSAssigner*>(built.get());
  ASSERT_NE(fa, nullptr);
  EXPECT_EQ(fa->options().regress_ranges().size(), 2u);
  EXPECT_TRUE(std::isinf(fa->options().regress_ranges()[1].second));
  EXPECT_DOUBLE_EQ(fa->options().center_sample_radius(), 2.5);
  try {
    PointAssignerRegistry().build(
        Config::parse("{a: {type: FCOSAssigner, regress_ranges: [[64, 8]]}}", "a.yaml")["a"]);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a.regress_ranges[0]"), std::string::npos) << e.what();
  }
  try {
    PointAssignerRegistry().build(
        Config::parse("{a: {type: FCOSAssigner, radius: 1}}", "a.yaml")["a"]);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'a.radius'"), std::string::npos) << e.what();
  }
  // Three levels of points but two ranges.
  FCOSAssigner two(FCOSAssignerOptions().regress_ranges({{-1, 64}, {64, kInf}}));
  EXPECT_THROW(two.assign(grid({8, 16, 32}, {2, 2, 2}), {torch::zeros({0, 4})},
                          {torch::zeros({0}, torch::kLong)}, 2),
               c10::Error);
  EXPECT_THROW(two.assign(grid({8, 16}, {2, 2}), {torch::tensor({{0.f, 0.f, 4.f, 4.f}})},
                          {torch::tensor({5}, torch::kLong)}, 2),
               c10::Error);
}

}  // namespace
}  // namespace setdet
