// DETA's IoU assignment (stage 1 / stage 2, object balancing), Deformable DETR's Hungarian matcher
// and the first-stage query selections, on hand-made cases and scipy's goldens.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "setdet/assign/deta_assigner.h"
#include "setdet/assign/hungarian_matcher.h"
#include "setdet/models/transformers/query_selection.h"

namespace setdet {
namespace {

at::Tensor boxes(std::vector<float> v) { return at::tensor(v, at::kFloat).view({-1, 4}); }

std::set<std::pair<int64_t, int64_t>> pair_set(const PositivePairs& p) {
  std::set<std::pair<int64_t, int64_t>> out;
  for (int64_t i = 0; i < p.pred.numel(); ++i) {
    out.insert({p.pred[i].item<int64_t>(), p.gt[i].item<int64_t>()});
  }
  return out;
}

DetaIoUAssignerOptions no_sampling(DetaIoUAssignerOptions o) {
  o.num_samples = 1000;
  o.pos_fraction = 1.0;
  return o;
}

TEST(DetaAssign, Stage1ThresholdsAndLowQualityMatches) {
  // GT 0 = [0, 0, 10, 10] (area 100); anchors along x with IoU 1, 0.818, 0.538 (ignored), 0.25
  // (negative). GT 1 = [100, 100, 110, 110] overlaps only anchor 4 (IoU 0.333): a low-quality
  // match. Anchor 5 overlaps nothing.
  const at::Tensor anchors = boxes({0, 0, 10, 10, 1,   0,   11,  10,  3,   0,   13,  10,
                                    6, 0, 16, 10, 105, 100, 115, 110, 200, 200, 210, 210});
  const at::Tensor gt = boxes({0, 0, 10, 10, 100, 100, 110, 110});
  DetaIoUAssignerOptions o = no_sampling(DetaIoUAssigner::stage1_defaults());
  o.max_k = std::nullopt;
  EXPECT_EQ(pair_set(DetaIoUAssigner(o).assign(anchors, gt)),
            (std::set<std::pair<int64_t, int64_t>>{{0, 0}, {1, 0}, {4, 1}}));
  o.allow_low_quality_matches = false;
  EXPECT_EQ(pair_set(DetaIoUAssigner(o).assign(anchors, gt)),
            (std::set<std::pair<int64_t, int64_t>>{{0, 0}, {1, 0}}));
}

TEST(DetaAssign, Stage2ThresholdIsPointSix) {
  // IoU with GT 0: 0.818, 0.667, 0.538. At 0.6 (no ignore band) the first two are positive; at
  // 0.7 only the first.
  const at::Tensor props = boxes({1, 0, 11, 10, 2, 0, 12, 10, 3, 0, 13, 10});
  const at::Tensor gt = boxes({0, 0, 10, 10});
  DetaIoUAssignerOptions o = no_sampling(DetaIoUAssigner::stage2_defaults());
  EXPECT_DOUBLE_EQ(o.pos_iou_thr, 0.6);
  EXPECT_DOUBLE_EQ(o.neg_iou_thr, 0.6);
  EXPECT_DOUBLE_EQ(DetaIoUAssigner::stage2_defaults().pos_fraction, 0.25);
  EXPECT_EQ(pair_set(DetaIoUAssigner(o).assign(props, gt)),
            (std::set<std::pair<int64_t, int64_t>>{{0, 0}, {1, 0}}));
  o.pos_iou_thr = o.neg_iou_thr = 0.7;
  EXPECT_EQ(pair_set(DetaIoUAssigner(o).assign(props, gt)),
            (std::set<std::pair<int64_t, int64_t>>{{0, 0}}));
}

TEST(DetaAssign, ObjectBalancingKeepsAtMostKPerGtByIou) {
  // GT 0 has 6 positives of decreasing IoU, GT 1 has 2.
  std::vector<float> v;
  for (int i = 0; i < 6; ++i) {
    const float s = 0.2f * static_cast<float>(i);
    v.insert(v.end(), {s, 0, 10 + s, 10});
  }
  v.insert(v.end(), {50, 50, 60, 60, 50.5f, 50, 60.5f, 60});
  const at::Tensor props = boxes(v);
  const at::Tensor gt = boxes({0, 0, 10, 10, 50, 50, 60, 60});
  DetaIoUAssignerOptions o = no_sampling(DetaIoUAssigner::stage1_defaults());
  o.max_k = 4;
  EXPECT_EQ(
      pair_set(DetaIoUAssigner(o).assign(props, gt)),
      (std::set<std::pair<int64_t, int64_t>>{{0, 0}, {1, 0}, {2, 0}, {3, 0}, {6, 1}, {7, 1}}));
  o.max_k = 1;
  EXPECT_EQ(pair_set(DetaIoUAssigner(o).assign(props, gt)),
            (std::set<std::pair<int64_t, int64_t>>{{0, 0}, {6, 1}}));
  o.max_k = std::nullopt;  // Table 8's K = inf
  EXPECT_EQ(DetaIoUAssigner(o).assign(props, gt).pred.numel(), 8);
}

TEST(DetaAssign, BalancingTakesTheTopIouPredictionsAmongAllAsTheReference) {
  // sample_topk_per_gt: the count c comes from the positives, the predictions from the top-k
  // IoU row over ALL predictions (here prediction 2, not a positive, has the best IoU).
  const at::Tensor iou = at::tensor({0.75f, 0.7f, 0.9f, 0.1f}).view({1, 4});
  const PositivePairs pos{at::tensor({int64_t{0}, int64_t{1}}),
                          at::tensor({int64_t{0}, int64_t{0}})};
  const PositivePairs out = balance_positives(pos, iou, 4);
  EXPECT_TRUE(out.pred.equal(at::tensor({int64_t{2}, int64_t{0}})));
  EXPECT_TRUE(out.gt.equal(at::tensor({int64_t{0}, int64_t{0}})));
  EXPECT_EQ(balance_positives(pos, iou, 1).pred.item<int64_t>(), 2);
}

TEST(DetaAssign, PositiveFractionCapsTheRandomSubset) {
  // 12 predictions, all IoU >= 0.7 with the one GT; 8 samples x 25% -> 2 positives.
  std::vector<float> v;
  for (int i = 0; i < 12; ++i) v.insert(v.end(), {0.05f * static_cast<float>(i), 0, 10, 10});
  DetaIoUAssignerOptions o = DetaIoUAssigner::stage1_defaults();
  o.num_samples = 8;
  o.pos_fraction = 0.25;
  o.max_k = std::nullopt;
  at::manual_seed(3);
  const PositivePairs p = DetaIoUAssigner(o).assign(boxes(v), boxes({0, 0, 10, 10}));
  EXPECT_EQ(p.pred.numel(), 2);
  EXPECT_TRUE((p.gt == 0).all().item<bool>());
  // stage 2: num_samples = the number of predictions (12 x 25% = 3)
  DetaIoUAssignerOptions s2 = DetaIoUAssigner::stage2_defaults();
  s2.max_k = std::nullopt;
  EXPECT_EQ(DetaIoUAssigner(s2).assign(boxes(v), boxes({0, 0, 10, 10})).pred.numel(), 3);
}

TEST(DetaAssign, NoGtNoPositives) {
  const PositivePairs p = DetaIoUAssigner(DetaIoUAssigner::stage2_defaults())
                              .assign(boxes({0, 0, 1, 1, 2, 2, 3, 3}), at::empty({0, 4}));
  EXPECT_EQ(p.pred.numel(), 0);
  EXPECT_EQ(p.gt.numel(), 0);
}

TEST(DetaAssign, OptionsFromConfigNameTheKeyPath) {
  const auto err = [](const std::string& yaml) {
    try {
      deta_assigner_options(Config::parse(yaml, "a.yaml"), DetaIoUAssigner::stage1_defaults());
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string e = err("{pos_iou_thr: 0.2}");
  EXPECT_NE(e.find("a.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("pos_iou_thr: expected a value in [neg_iou_thr, 1]"), std::string::npos) << e;
  EXPECT_NE(err("{bogus: 1}").find("bogus"), std::string::npos);
  EXPECT_EQ(err("{neg_iou_thr: 0.4, pos_iou_thr: 0.5, num_samples: 128}"), "");
}

// scipy goldens: tests/python/gen_deta_goldens.py
TEST(HungarianMatcher, CostAndAssignmentMatchScipy) {
  std::ifstream in(std::string(SETDET_TEST_DATA_DIR) + "/deta/hungarian_goldens.txt");
  ASSERT_TRUE(in.good());
  std::string line;
  std::getline(in, line);  // header
  std::getline(in, line);
  const int cases = std::stoi(line);
  ASSERT_GT(cases, 0);
  auto read_line = [&]() {
    std::getline(in, line);
    std::istringstream ss(line);
    std::vector<double> v;
    double x;
    while (ss >> x) v.push_back(x);
    return v;
  };
  for (int c = 0; c < cases; ++c) {
    const auto dims = read_line();
    const int64_t q = static_cast<int64_t>(dims[0]), nc = static_cast<int64_t>(dims[1]),
                  m = static_cast<int64_t>(dims[2]);
    auto t = [](const std::vector<double>& v, at::IntArrayRef shape, at::ScalarType type) {
      return at::tensor(v, at::kDouble).view(shape).to(type);
    };
    const at::Tensor logits = t(read_line(), {q, nc}, at::kFloat);
    const at::Tensor pred = t(read_line(), {q, 4}, at::kFloat);
    const at::Tensor labels = t(read_line(), {m}, at::kLong);
    const at::Tensor gt = t(read_line(), {m, 4}, at::kFloat);
    const at::Tensor cost = t(read_line(), {q, m}, at::kFloat);
    const at::Tensor rows = t(read_line(), {-1}, at::kLong);
    const at::Tensor cols = t(read_line(), {-1}, at::kLong);
    const HungarianMatcherOptions o;
    const at::Tensor mine = hungarian_cost(logits, pred, labels, gt, o);
    EXPECT_TRUE(at::allclose(mine, cost, 1e-5, 1e-5)) << "case " << c;
    const PositivePairs p = hungarian_match(logits, pred, labels, gt, o);
    EXPECT_TRUE(p.pred.equal(rows)) << "case " << c;
    EXPECT_TRUE(p.gt.equal(cols)) << "case " << c;
  }
}

TEST(HungarianMatcher, OneQueryPerGtAndEmptyGt) {
  const at::Tensor logits = at::zeros({4, 2});
  const at::Tensor pred = at::tensor({0.2f, 0.2f, 0.1f, 0.1f, 0.8f, 0.8f, 0.1f, 0.1f, 0.5f, 0.5f,
                                      0.2f, 0.2f, 0.21f, 0.2f, 0.1f, 0.1f})
                              .view({4, 4});
  const at::Tensor gt = at::tensor({0.8f, 0.8f, 0.1f, 0.1f, 0.2f, 0.2f, 0.1f, 0.1f}).view({2, 4});
  const PositivePairs p =
      hungarian_match(logits, pred, at::tensor({int64_t{0}, int64_t{1}}), gt, {});
  EXPECT_EQ(pair_set(p), (std::set<std::pair<int64_t, int64_t>>{{0, 1}, {1, 0}}));
  EXPECT_EQ(
      hungarian_match(logits, pred, at::empty({0}, at::kLong), at::empty({0, 4}), {}).pred.numel(),
      0);
}

TEST(QuerySelection, TopkIsThePlainTopK) {
  const at::Tensor logits = at::tensor({0.1f, 3.f, -1.f, 2.f, 0.5f}).view({1, 5});
  EXPECT_TRUE(topk_query_selection(logits, 3).equal(
      at::tensor({int64_t{1}, int64_t{3}, int64_t{4}}).view({1, 3})));
}

TEST(QuerySelection, DetaNmsPerLevelThenEqualShare) {
  // Level 0: positions 0-5, level 1: positions 6-9. Position 1 duplicates position 0 (same box,
  // lower score): suppressed at IoU > 0.9. Position 6 has the same box as 0 but another level:
  // kept. k = 4 -> 2 per level.
  const at::Tensor logits =
      at::tensor({5.f, 4.f, 3.f, 2.f, 1.f, 0.f, 4.5f, 0.5f, -1.f, -2.f}).view({1, 10});
  std::vector<float> v;
  for (int i = 0; i < 10; ++i) {
    const float x = (i == 1 || i == 6) ? 0.f : 0.1f * static_cast<float>(i);
    v.insert(v.end(), {x, 0, x + 0.05f, 0.05f});
  }
  const at::Tensor b = at::tensor(v).view({1, 10, 4});
  const at::Tensor lvl = at::tensor(std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1}, at::kLong);
  const at::Tensor sel = deta_query_selection(logits, b, lvl, 2, 4);
  // survivors by score: 0 (5), 6 (4.5), 2 (3), 3, 4, 7, 5, 8, 9 -> first 2 of each level
  EXPECT_TRUE(sel.equal(at::tensor(std::vector<int64_t>{0, 6, 2, 7}).view({1, 4}))) << sel;
}

TEST(QuerySelection, DetaPadsShortLevelsWithTheBestRemaining) {
  // Level 1 has one position: k = 4 gives level 0 two and level 1 one; the fourth slot goes to
  // the best remaining survivor (level 0's third).
  const at::Tensor logits = at::tensor({5.f, 4.f, 3.f, 2.f, 1.f}).view({1, 5});
  std::vector<float> v;
  for (int i = 0; i < 5; ++i) v.insert(v.end(), {0.15f * i, 0, 0.15f * i + 0.1f, 0.1f});
  const at::Tensor b = at::tensor(v).view({1, 5, 4});
  const at::Tensor lvl = at::tensor(std::vector<int64_t>{0, 0, 0, 0, 1}, at::kLong);
  EXPECT_TRUE(deta_query_selection(logits, b, lvl, 2, 4)
                  .equal(at::tensor(std::vector<int64_t>{0, 1, 2, 4}).view({1, 4})));
  // pre_nms_top_k 2 per level leaves 3 candidates < k: the reference falls back to the top-k
  DetaQuerySelectionOptions o;
  o.pre_nms_top_k = 2;
  EXPECT_TRUE(deta_query_selection(logits, b, lvl, 2, 4, o)
                  .equal(at::tensor(std::vector<int64_t>{0, 1, 2, 3}).view({1, 4})));
}

}  // namespace
}  // namespace setdet
