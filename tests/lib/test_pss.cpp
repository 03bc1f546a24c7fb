#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "detector_testing.h"
#include "setdet/assign/one_to_one.h"
#include "setdet/config/config.h"
#include "setdet/losses/focal_loss.h"
#include "setdet/losses/pss_loss.h"
#include "setdet/losses/rank_loss.h"
#include "setdet/models/detectors/fcos_pss.h"

namespace setdet {
namespace {

using test_util::meta;
using test_util::two_image_batch;
const auto error_of = test_util::build_error;

std::string tiny_model_yaml(const std::string& extra = "") {
  return "{type: FCOS_PSS, num_classes: 3,"
         " backbone: {type: ResNet, depth: 18, base_channels: 16, frozen_bn: false,"
         " out_indices: [1, 2, 3]},"
         " neck: {type: FPN, out_channels: 32, num_outs: 5, extra_input: p5},"
         " head: {type: FCOSHead, channels: 32, num_convs: 2, gn_groups: 8}" +
         extra + "}";
}

std::shared_ptr<FCOSPSSDetector> tiny_model(const std::string& extra = "") {
  auto model = std::dynamic_pointer_cast<FCOSPSSDetector>(
      DetectorRegistry().build(Config::parse(tiny_model_yaml(extra), "pss.yaml")));
  EXPECT_NE(model, nullptr);
  return model;
}

bool is_pss_param(const std::string& name) { return name.rfind("pss_head.", 0) == 0; }

// L_pss + L_rank backpropagated alone: returns {max |grad| over the FCOS network (backbone,
// neck, FCOS head), max |grad| over the PSS head}; an undefined grad counts as 0.
std::pair<double, double> pss_only_gradients(FCOSPSSDetector& model, const Batch& batch) {
  model.train();
  model.zero_grad();
  auto losses = model.losses(batch);
  EXPECT_GT(losses.at("num_pos_one_to_one").item<double>(), 0);
  EXPECT_GT(losses.at("loss_pss").item<double>(), 0);
  EXPECT_GT(losses.at("loss_rank").item<double>(), 0);
  (losses.at("loss_pss") + losses.at("loss_rank")).backward();
  double fcos_max = 0, pss_max = 0;
  int64_t fcos_params = 0;
  for (const auto& kv : model.named_parameters()) {
    const at::Tensor& g = kv.value().grad();
    const double m = g.defined() ? g.abs().max().item<double>() : 0.0;
    if (is_pss_param(kv.key())) {
      pss_max = std::max(pss_max, m);
    } else {
      fcos_max = std::max(fcos_max, m);
      ++fcos_params;
    }
  }
  EXPECT_GT(fcos_params, 50);
  return {fcos_max, pss_max};
}

TEST(Pss, StopGradientKeepsPssLossesOutOfTheFcosParameters) {
  torch::manual_seed(0);
  auto model = tiny_model();
  const Batch batch = two_image_batch();
  model->train();
  model->zero_grad();
  auto losses = model->losses(batch);
  (losses.at("loss_pss") + losses.at("loss_rank")).backward();
  int64_t checked = 0;
  for (const auto& kv : model->named_parameters()) {
    if (is_pss_param(kv.key())) continue;
    const at::Tensor& g = kv.value().grad();
    // Exactly no gradient: either none was ever accumulated or it is all zeros.
    EXPECT_TRUE(!g.defined() || g.eq(0).all().item<bool>()) << kv.key();
    ++checked;
  }
  EXPECT_GT(checked, 50);
  const auto [fcos_max, pss_max] = pss_only_gradients(*model, batch);
  EXPECT_EQ(fcos_max, 0.0);
  EXPECT_GT(pss_max, 0.0);

  // Control: the same losses without the stop-gradient do reach the FCOS network, so the check
  // above can fail.
  torch::manual_seed(0);
  auto open = tiny_model(", pss_train_cfg: {stop_gradient: false}");
  const auto [open_fcos, open_pss] = pss_only_gradients(*open, batch);
  EXPECT_GT(open_fcos, 0.0);
  EXPECT_GT(open_pss, 0.0);
}

TEST(Pss, FcosLossesTrainTheWholeNetworkButNotThePssHead) {
  torch::manual_seed(1);
  auto model = tiny_model();
  const Batch batch = two_image_batch();
  model->train();
  model->zero_grad();
  auto losses = model->losses(batch);
  (losses.at("loss_cls") + losses.at("loss_bbox") + losses.at("loss_centerness")).backward();
  for (const auto& kv : model->named_parameters()) {
    const at::Tensor& g = kv.value().grad();
    if (is_pss_param(kv.key())) {
      EXPECT_TRUE(!g.defined() || g.eq(0).all().item<bool>()) << kv.key();
    }
  }
  const at::Tensor& g = model->named_parameters()["backbone.body.conv1.weight"].grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().max().item<double>(), 0.0);
}

TEST(Pss, StateDictAddsOnlyThePssHead) {
  auto pss = tiny_model();
  auto fcos = DetectorRegistry().build(Config::parse(
      "{type: FCOS, num_classes: 3, backbone: {type: ResNet, depth: 18, base_channels: 16, "
      "frozen_bn: false, out_indices: [1, 2, 3]}, neck: {type: FPN, out_channels: 32, num_outs: 5, "
      "extra_input: p5}, head: {type: FCOSHead, channels: 32, num_convs: 2, gn_groups: 8}}"));
  const auto fcos_params = fcos->named_parameters();
  int64_t extra = 0;
  for (const auto& kv : pss->named_parameters()) {
    if (is_pss_param(kv.key())) {
      ++extra;
    } else {
      ASSERT_TRUE(fcos_params.contains(kv.key())) << kv.key();
    }
  }
  EXPECT_EQ(pss->named_parameters().size() - extra, fcos_params.size());
  // two (conv + GroupNorm) layers and the logit conv: 2 * 4 + 2 tensors
  EXPECT_EQ(extra, 10);
  const auto params = pss->named_parameters();
  EXPECT_EQ(params["pss_head.conv.0.weight"].sizes().vec(), (std::vector<int64_t>{32, 32, 3, 3}));
  EXPECT_EQ(params["pss_head.pss_logits.weight"].sizes().vec(),
            (std::vector<int64_t>{1, 32, 3, 3}));
}

TEST(Pss, ForwardNetworkThroughTheDetectorInterfaceIncludesThePssMaps) {
  torch::manual_seed(5);
  auto pss = tiny_model();
  pss->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor images = torch::randn({1, 3, 64, 96});
  DetectorModel& detector = *pss;
  const std::vector<at::Tensor> maps = detector.forward_network(images);
  const DenseHeadOutputs named = pss->forward_pss(images);
  // output by output in name order (bbox_distances, centerness, cls_logits, pss, reg_features),
  // 5 levels each
  ASSERT_EQ(named.size(), 5u);
  ASSERT_EQ(maps.size(), 25u);
  size_t k = 0;
  for (const auto& [name, levels] : named) {
    for (const auto& level : levels) {
      EXPECT_TRUE(maps[k].equal(level)) << name << " #" << k;
      ++k;
    }
  }
  EXPECT_EQ(maps[15].size(1), 1);  // pss logits on P3
  EXPECT_EQ(maps[15].size(2), 8);  // 64 / 8
}

TEST(Pss, MatchingQualityIsEq3) {
  const auto prob = torch::tensor({{0.25, 0.9}, {0.5, 0.0}}, torch::kDouble);
  const auto iou = torch::tensor({{0.5, 1.0}, {0.0, 0.7}}, torch::kDouble);
  const auto cand = torch::tensor({{true, false}, {true, true}});
  const auto q = matching_quality(prob, iou, cand, 0.8);
  EXPECT_NEAR(q[0][0].item<double>(), std::pow(0.25, 0.2) * std::pow(0.5, 0.8), 1e-12);
  EXPECT_EQ(q[0][1].item<double>(), 0.0);  // not a candidate
  EXPECT_EQ(q[1][0].item<double>(), 0.0);  // IoU 0
  EXPECT_EQ(q[1][1].item<double>(), 0.0);  // P 0
  EXPECT_NEAR(matching_quality(prob, iou, cand, 0.0)[0][0].item<double>(), 0.25, 1e-12);
  EXPECT_NEAR(matching_quality(prob, iou, cand, 1.0)[0][0].item<double>(), 0.5, 1e-12);
}

at::Tensor longs(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }

TEST(Pss, HungarianAndTop1OnHandMadeQuality) {
  // Two GTs want the same best row: top-1 gives it to both, Hungarian maximises the total
  // (0.85 + 0.8 > 0.9 + 0.1).
  auto q = torch::tensor({{0.9, 0.85}, {0.8, 0.1}}, torch::kDouble);
  auto all = torch::ones({2, 2}, torch::kBool);
  EXPECT_TRUE(torch::equal(match_one_to_one(q, all, OneToOneMatcher::kTop1), longs({0, 0})));
  EXPECT_TRUE(torch::equal(match_one_to_one(q, all, OneToOneMatcher::kHungarian), longs({1, 0})));

  // A GT with an empty Omega gets no positive; non-candidate rows are never used even when their
  // Q is larger.
  q = torch::tensor({{0.9, 0.2, 0.99}, {0.3, 0.4, 0.99}}, torch::kDouble);
  auto cand = torch::tensor({{true, false, false}, {false, true, false}});
  for (auto m : {OneToOneMatcher::kTop1, OneToOneMatcher::kHungarian}) {
    EXPECT_TRUE(torch::equal(match_one_to_one(q, cand, m), longs({0, 1, -1})));
  }

  // More GTs than candidate rows: one row for three GTs.
  q = torch::tensor({{0.5, 0.7, 0.2}, {0.0, 0.0, 0.0}}, torch::kDouble);
  cand = torch::tensor({{true, true, true}, {false, false, false}});
  EXPECT_TRUE(
      torch::equal(match_one_to_one(q, cand, OneToOneMatcher::kHungarian), longs({-1, 0, -1})));
  EXPECT_TRUE(torch::equal(match_one_to_one(q, cand, OneToOneMatcher::kTop1), longs({0, 0, 0})));

  // Hungarian matches as many GTs as it can before maximising Q: a candidate of quality 0 (e.g.
  // IoU 0 early in training) beats leaving GT 0 without a positive.
  q = torch::tensor({{0.9, 0.95}, {0.0, 0.0}}, torch::kDouble);
  cand = torch::tensor({{true, true}, {true, false}});
  EXPECT_TRUE(torch::equal(match_one_to_one(q, cand, OneToOneMatcher::kHungarian), longs({1, 0})));

  // Empty inputs.
  EXPECT_EQ(match_one_to_one(torch::zeros({0, 2}, torch::kDouble),
                             torch::zeros({0, 2}, torch::kBool), OneToOneMatcher::kHungarian)
                .sizes()
                .vec(),
            (std::vector<int64_t>{2}));
  EXPECT_EQ(match_one_to_one(torch::zeros({3, 0}, torch::kDouble),
                             torch::zeros({3, 0}, torch::kBool), OneToOneMatcher::kTop1)
                .numel(),
            0);
}

// Slow reference: every one-to-one partial matching restricted to candidates; the best has the
// most pairs, then the largest total Q.
std::pair<int64_t, double> brute_force_best(const at::Tensor& q, const at::Tensor& cand) {
  const int64_t p = q.size(0), n = q.size(1);
  std::vector<bool> used(p, false);
  std::pair<int64_t, double> best{-1, 0.0};
  std::function<void(int64_t, int64_t, double)> go = [&](int64_t j, int64_t count, double total) {
    if (j == n) {
      if (count > best.first || (count == best.first && total > best.second + 1e-12)) {
        best = {count, total};
      }
      return;
    }
    go(j + 1, count, total);
    for (int64_t i = 0; i < p; ++i) {
      if (used[i] || !cand[i][j].item<bool>()) continue;
      used[i] = true;
      go(j + 1, count + 1, total + q[i][j].item<double>());
      used[i] = false;
    }
  };
  go(0, 0, 0.0);
  return best;
}

TEST(Pss, HungarianMatchesBruteForceOnRandomCandidates) {
  torch::manual_seed(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t p = 1 + trial % 5, n = 1 + (trial / 5) % 4;
    at::Tensor q = torch::rand({p, n}, torch::kDouble);
    q.masked_fill_(torch::rand({p, n}) < 0.2, 0.0);
    const at::Tensor cand = torch::rand({p, n}) < 0.5;
    const at::Tensor q3 = matching_quality(q, torch::ones_like(q), cand, 0.0);
    const at::Tensor got = match_one_to_one(q3, cand, OneToOneMatcher::kHungarian);
    int64_t count = 0;
    double total = 0.0;
    std::vector<int64_t> rows;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = got[j].item<int64_t>();
      if (i < 0) continue;
      ASSERT_TRUE(cand[i][j].item<bool>()) << "trial " << trial;
      ASSERT_EQ(std::count(rows.begin(), rows.end(), i), 0) << "trial " << trial;
      rows.push_back(i);
      ++count;
      total += q3[i][j].item<double>();
    }
    const auto best = brute_force_best(q3, cand);
    EXPECT_EQ(count, best.first) << "trial " << trial;
    EXPECT_NEAR(total, best.second, 1e-9) << "trial " << trial;
  }
}

TEST(Pss, AssignOneToOneUsesTheBaseAssignersPositivesAsOmega) {
  // 4 points, 2 classes; GT 0 (class 1) has Omega {0, 1}, GT 1 (class 0) Omega {2}, GT 2 none.
  const auto gt =
      torch::tensor({{0.f, 0.f, 10.f, 10.f}, {20.f, 20.f, 30.f, 30.f}, {50.f, 50.f, 60.f, 60.f}});
  const auto labels = longs({1, 0, 1});
  auto prob = torch::zeros({1, 4, 2});
  prob[0][0][1] = 0.2f;  // exact box, low score
  prob[0][1][1] = 0.8f;  // half-overlapping box (IoU 0.5), high score
  prob[0][2][0] = 0.5f;
  prob[0][3][1] = 0.99f;  // not a positive of the base assigner
  const auto boxes = torch::tensor({{{0.f, 0.f, 10.f, 10.f},
                                     {0.f, 0.f, 10.f, 5.f},
                                     {21.f, 21.f, 30.f, 30.f},
                                     {50.f, 50.f, 60.f, 60.f}}});
  const auto matched = torch::tensor({{0, 0, 1, -1}}, torch::kLong);
  OneToOneOptions opts;  // alpha 0.8: 0.2^0.2 * 1 = 0.72 > 0.8^0.2 * 0.5^0.8 = 0.55
  auto t = assign_one_to_one(prob, boxes, matched, {gt}, {labels}, opts);
  ASSERT_EQ(t.assigned.size(), 1u);
  EXPECT_TRUE(torch::equal(t.assigned[0], longs({0, 2, -1})));
  EXPECT_EQ(t.num_positives, 2);
  auto expected = torch::zeros({1, 4, 2});
  expected[0][0][1] = 1.f;
  expected[0][2][0] = 1.f;
  EXPECT_TRUE(torch::equal(t.labels, expected));

  opts.alpha = 0.0;  // classification only: the higher-scored point 1 wins
  opts.matcher = OneToOneMatcher::kTop1;
  t = assign_one_to_one(prob, boxes, matched, {gt}, {labels}, opts);
  EXPECT_TRUE(torch::equal(t.assigned[0], longs({1, 2, -1})));

  // No GT at all.
  t = assign_one_to_one(prob, boxes, torch::full({1, 4}, -1, torch::kLong), {torch::zeros({0, 4})},
                        {torch::zeros({0}, torch::kLong)}, OneToOneOptions{});
  EXPECT_EQ(t.num_positives, 0);
  EXPECT_EQ(t.labels.sum().item<double>(), 0.0);
  EXPECT_EQ(t.assigned[0].numel(), 0);
}

TEST(Pss, RankingLossIsEq2OnAHandComputedCase) {
  auto pos = torch::tensor({0.9, 0.6}, torch::kDouble).requires_grad_();
  auto neg = torch::tensor({0.5, 0.1, 0.3}, torch::kDouble).requires_grad_();
  // top-2 negatives {0.5, 0.3}; hinge terms max(0, 0.5 - p + n):
  // p = 0.9: 0.1, 0 ; p = 0.6: 0.4, 0.2 -> sum 0.7 over 4 pairs
  const auto loss = ranking_loss(pos, neg, 0.5, 2);
  EXPECT_NEAR(loss.item<double>(), 0.175, 1e-12);
  loss.backward();
  EXPECT_TRUE(torch::allclose(pos.grad(), torch::tensor({-0.25, -0.5}, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(neg.grad(), torch::tensor({0.5, 0.0, 0.25}, torch::kDouble)));
  // All negatives when fewer than num_neg (n = 0.1 adds two zero terms); well-separated scores
  // give 0.
  EXPECT_NEAR(ranking_loss(pos.detach(), neg.detach(), 0.5, 100).item<double>(),
              (0.1 + 0.0 + 0.0 + 0.4 + 0.0 + 0.2) / 6, 1e-12);
  EXPECT_EQ(ranking_loss(torch::tensor({1.0}), torch::tensor({0.2}), 0.5, 100).item<double>(), 0);
  EXPECT_EQ(ranking_loss(torch::zeros({0}), neg.detach(), 0.5, 100).item<double>(), 0);
  EXPECT_EQ(ranking_loss(pos.detach(), torch::zeros({0}, torch::kDouble), 0.5, 100).item<double>(),
            0);
}

TEST(Pss, ProductFocalLossReducesToSigmoidFocalLoss) {
  torch::manual_seed(3);
  const auto logits = torch::randn({50}, torch::kDouble) * 4;
  const auto targets = (torch::rand({50}) < 0.3).to(torch::kDouble);
  // One factor: log p = log sigmoid(x) gives torchvision's sigmoid_focal_loss.
  EXPECT_TRUE(torch::allclose(focal_loss_from_log_prob(torch::log_sigmoid(logits), targets),
                              sigmoid_focal_loss(logits, targets, 0.25, 2.0), 1e-9, 1e-12));
  // Three factors, as Eq. (4): the loss of the product probability.
  const auto a = torch::randn({50}, torch::kDouble), b = torch::randn({50}, torch::kDouble);
  const auto p = torch::sigmoid(logits) * torch::sigmoid(a) * torch::sigmoid(b);
  const auto expected = -(0.25 * targets * (1 - p).square() * p.log() +
                          0.75 * (1 - targets) * p.square() * (1 - p).log());
  const auto got = focal_loss_from_log_prob(
      torch::log_sigmoid(logits) + torch::log_sigmoid(a) + torch::log_sigmoid(b), targets);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-9, 1e-12));
  // Stays finite where the product underflows.
  const auto tiny = focal_loss_from_log_prob(torch::tensor({-200.0, -1e-30}, torch::kDouble),
                                             torch::tensor({1.0, 0.0}, torch::kDouble));
  EXPECT_TRUE(torch::isfinite(tiny).all().item<bool>());
}

TEST(Pss, NmsFreeDecodingKeepsOnlyThePssSelectedPoint) {
  auto model = tiny_model();
  // One level, stride 8, 4 x 4 points. Class 1 scores high on a 3 x 3 block of points whose boxes
  // (+-8 px around each point) are near-duplicates; the PSS fires at the block centre only.
  PointSet ps;
  ps.strides = {8};
  ps.num_points = {16};
  std::vector<at::Tensor> pts;
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) pts.push_back(torch::tensor({x * 8.f + 4.f, y * 8.f + 4.f}));
  }
  ps.points = torch::stack(pts);
  DenseHeadOutputs out;
  auto cls = torch::full({1, 3, 4, 4}, -10.f);
  cls.select(1, 1).narrow(1, 0, 3).narrow(2, 0, 3).fill_(10.f);
  out["cls_logits"] = {cls};
  out["centerness"] = {torch::full({1, 1, 4, 4}, 10.f)};
  out["bbox_distances"] = {torch::full({1, 4, 4, 4}, 8.f)};
  auto pss = torch::full({1, 1, 4, 4}, -10.f);
  pss[0][0][1][1] = 10.f;
  out["pss"] = {pss};
  Batch batch;
  batch.metas = {meta(32, 32)};
  auto det = model->decode_nms_free(out, ps, batch);
  ASSERT_EQ(det.size(), 1u);
  ASSERT_EQ(det[0].scores.numel(), 1);
  EXPECT_EQ(det[0].labels[0].item<int64_t>(), 1);
  EXPECT_TRUE(torch::allclose(det[0].boxes, torch::tensor({{4.f, 4.f, 20.f, 20.f}})));
  EXPECT_NEAR(det[0].scores[0].item<double>(), std::pow(1 / (1 + std::exp(-10.0)), 3), 1e-5);

  // Without the selector every duplicate survives: nothing else removes them.
  out["pss"] = {torch::full({1, 1, 4, 4}, 10.f)};
  det = model->decode_nms_free(out, ps, batch);
  EXPECT_EQ(det[0].scores.numel(), 9);
  EXPECT_TRUE((det[0].labels == 1).all().item<bool>());
}

TEST(Pss, OutputModesDecodeOneCheckpointTwoWays) {
  torch::manual_seed(4);
  auto model = tiny_model(", pss_test_cfg: {score_thr: 0.0, max_per_img: 40}");
  const auto modes = model->output_modes();
  ASSERT_EQ(modes.size(), 2u);
  EXPECT_EQ(modes[0].name, "nms_free");
  EXPECT_EQ(modes[0].metric_tag, "without_nms");
  EXPECT_EQ(modes[1].name, "nms");
  EXPECT_EQ(modes[1].metric_tag, "with_nms");
  EXPECT_EQ(model->output_mode(), "nms_free");
  model->eval();
  Batch b;
  b.images = torch::randn({1, 3, 64, 96});
  b.metas = {meta(64, 96)};
  const auto free_det = model->predict(b);
  ASSERT_EQ(free_det[0].scores.numel(), 40);
  EXPECT_TRUE(
      (free_det[0].scores.slice(0, 1) <= free_det[0].scores.slice(0, 0, -1)).all().item<bool>());
  model->set_output_mode("nms");
  EXPECT_EQ(model->output_mode(), "nms");
  const auto nms_det = model->predict(b);
  // The "nms" output is FCOS's: same as predict() of FCOSDetector on the same weights.
  const auto fcos_det = model->FCOSDetector::predict(b);
  EXPECT_TRUE(torch::equal(nms_det[0].scores, fcos_det[0].scores));
  EXPECT_TRUE(torch::equal(nms_det[0].boxes, fcos_det[0].boxes));
  try {
    model->set_output_mode("soft_nms");
    ADD_FAILURE() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("unknown output mode 'soft_nms'"), std::string::npos);
  }
}

TEST(Pss, ConfigErrorsNameTheKeyPath) {
  EXPECT_NE(error_of(tiny_model_yaml(", pss_train_cfg: {matcher: greedy}"))
                .find("pss_train_cfg.matcher: expected 'hungarian' or 'top1', got 'greedy'"),
            std::string::npos);
  EXPECT_NE(error_of(tiny_model_yaml(", pss_test_cfg: {output_mode: soft}"))
                .find("pss_test_cfg.output_mode"),
            std::string::npos);
  EXPECT_NE(error_of(tiny_model_yaml(", pss_head: {num_conv: 2}"))
                .find("unknown key 'pss_head.num_conv'"),
            std::string::npos);
  EXPECT_NE(error_of(tiny_model_yaml(", pss_head: {channels: 20}")).find("pss_head.gn_groups"),
            std::string::npos);
  EXPECT_NE(error_of(tiny_model_yaml(", pss_train_cfg: {alpha: 1.5}")).find("pss_train_cfg.alpha"),
            std::string::npos);
}

TEST(Pss, AtssPssTakesOmegaFromTheAtssAssigner) {
  torch::manual_seed(6);
  auto model = std::dynamic_pointer_cast<FCOSPSSDetector>(DetectorRegistry().build(
      Config::parse("{type: ATSS_PSS, num_classes: 3,"
                    " backbone: {type: ResNet, depth: 18, base_channels: 16, frozen_bn: false,"
                    " out_indices: [1, 2, 3]},"
                    " neck: {type: FPN, out_channels: 32, num_outs: 5, extra_input: p5},"
                    " head: {type: FCOSHead, channels: 32, num_convs: 2, gn_groups: 8}}",
                    "atss_pss.yaml")));
  ASSERT_NE(model, nullptr);
  model->train();
  auto losses = model->losses(two_image_batch());
  // ATSS gives every GT positives (top-9 per level), so every GT gets its one-to-one positive.
  EXPECT_EQ(losses.at("num_pos_one_to_one").item<double>(), 3);
  EXPECT_GT(losses.at("num_pos").item<double>(), 3);
  for (const auto& [name, value] : losses) {
    EXPECT_TRUE(std::isfinite(value.item<double>())) << name;
  }
}

double iou(const at::Tensor& a, const at::Tensor& b) {
  const double iw = std::min(a[2].item<double>(), b[2].item<double>()) -
                    std::max(a[0].item<double>(), b[0].item<double>());
  const double ih = std::min(a[3].item<double>(), b[3].item<double>()) -
                    std::max(a[1].item<double>(), b[1].item<double>());
  if (iw <= 0 || ih <= 0) return 0.0;
  const auto area = [](const at::Tensor& x) {
    return (x[2].item<double>() - x[0].item<double>()) *
           (x[3].item<double>() - x[1].item<double>());
  };
  return iw * ih / (area(a) + area(b) - iw * ih);
}

// The paper's claim in miniature: once trained, the PSS score keeps one detection per object
// (label right, IoU > 0.5: a true positive at AP50) and pushes the duplicates down, so no NMS is
// needed.
TEST(Pss, OverfitNmsFreeOutputHasOneConfidentDetectionPerObject) {
  torch::manual_seed(5);
  auto model = tiny_model(", pss_test_cfg: {score_thr: 0.0, max_per_img: 100}");
  model->train();
  const Batch batch = two_image_batch();
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(2e-3));
  double first_pss = 0, last_pss = 0;
  for (int it = 0; it < 200; ++it) {
    auto losses = model->losses(batch);
    at::Tensor sum = torch::zeros({});
    for (const auto& [name, value] : losses) {
      if (name.rfind("loss", 0) == 0) sum = sum + value;
    }
    if (it == 0) first_pss = losses.at("loss_pss").item<double>();
    last_pss = losses.at("loss_pss").item<double>();
    opt.zero_grad();
    sum.backward();
    opt.step();
  }
  EXPECT_LT(last_pss, 0.2 * first_pss) << first_pss << " -> " << last_pss;
  model->eval();
  const auto det = model->predict(batch);
  ASSERT_EQ(det.size(), 2u);
  for (size_t i = 0; i < det.size(); ++i) {
    const at::Tensor confident = (det[i].scores > 0.3).nonzero().squeeze(1);
    EXPECT_EQ(confident.numel(), batch.boxes[i].size(0))
        << "image " << i << ": " << det[i].scores.slice(0, 0, 5);
    for (int64_t j = 0; j < batch.boxes[i].size(0); ++j) {
      int64_t hits = 0;
      for (int64_t k = 0; k < confident.numel(); ++k) {
        const int64_t d = confident[k].item<int64_t>();
        if (det[i].labels[d].item<int64_t>() == batch.labels[i][j].item<int64_t>() &&
            iou(det[i].boxes[d], batch.boxes[i][j]) > 0.5) {
          ++hits;
        }
      }
      EXPECT_EQ(hits, 1) << "image " << i << " object " << j;
    }
  }
}

TEST(Pss, TrainingStepsLowerTheLosses) {
  torch::manual_seed(5);
  auto model = tiny_model(", pss_train_cfg: {matcher: top1}");
  model->train();
  const Batch batch = two_image_batch();
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
  std::vector<double> total, pss;
  for (int it = 0; it < 25; ++it) {
    auto losses = model->losses(batch);
    at::Tensor sum = torch::zeros({});
    for (const auto& [name, value] : losses) {
      if (name.rfind("loss", 0) == 0) sum = sum + value;
    }
    ASSERT_TRUE(std::isfinite(sum.item<double>())) << "iteration " << it;
    EXPECT_EQ(losses.at("num_pos_one_to_one").item<double>(), 3);  // every GT has a positive
    total.push_back(sum.item<double>());
    pss.push_back(losses.at("loss_pss").item<double>());
    opt.zero_grad();
    sum.backward();
    opt.step();
  }
  EXPECT_LT(total.back(), 0.6 * total.front()) << total.front() << " -> " << total.back();
  EXPECT_LT(pss.back(), pss.front()) << pss.front() << " -> " << pss.back();
}

}  // namespace
}  // namespace setdet
