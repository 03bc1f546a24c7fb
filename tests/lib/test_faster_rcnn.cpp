// Faster R-CNN with FPN: samplers, RPN proposals, the RoI head (2fc, 2fc+RM, OHEM), learned
// duplicate removal (end to end and on a frozen detector), config errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "detector_testing.h"
#include "setdet/assign/max_iou_assigner.h"
#include "setdet/assign/sampler.h"
#include "setdet/models/detectors/two_stage.h"

namespace setdet {
namespace {

using test_util::build_error;
using test_util::error_of;
using test_util::sgd_loss_totals;
using test_util::two_image_batch;

// `roi_extra` is appended to the roi_head node; `sampler` replaces its RandomSampler.
std::string tiny_yaml(
    const std::string& roi_extra = "",
    const std::string& anchor_sizes = "[[16], [32], [64], [128], [256]]",
    const std::string& sampler = "{type: RandomSampler, num: 64, pos_fraction: 0.25}") {
  return "{type: FasterRCNN, num_classes: 3, channels_last: false,"
         " backbone: {type: ResNet, depth: 18, base_channels: 8, frozen_bn: false,"
         "            out_indices: [0, 1, 2, 3]},"
         " neck: {type: FPN, out_channels: 16, num_outs: 5, extra_type: maxpool},"
         " rpn: {anchor_generator: {sizes: " +
         anchor_sizes +
         "},"
         "       train_cfg: {pre_nms_top_n: 300, post_nms_top_n: 100},"
         "       test_cfg: {pre_nms_top_n: 300, post_nms_top_n: 100}},"
         " roi_head: {fc_dim: 32, sampler: " +
         sampler + roi_extra + "}}";
}

std::shared_ptr<TwoStageDetector> tiny(
    const std::string& roi_extra = "",
    const std::string& sampler = "{type: RandomSampler, num: 64, pos_fraction: 0.25}") {
  auto d = std::dynamic_pointer_cast<TwoStageDetector>(DetectorRegistry().build(
      Config::parse(tiny_yaml(roi_extra, "[[16], [32], [64], [128], [256]]", sampler), "m.yaml")));
  EXPECT_TRUE(d != nullptr);
  return d;
}

TEST(Samplers, RandomKeepsTheQuotaAndOhemTheHardest) {
  // 10 positives (GT 0), 30 negatives, 5 ignored
  at::Tensor matched = at::cat(
      {at::zeros({10}, at::kLong), at::full({30}, -1, at::kLong), at::full({5}, -2, at::kLong)});
  RandomSampler random(16, 0.25, -1, true);
  torch::manual_seed(0);
  auto s = random.sample(matched, {});
  EXPECT_EQ(s.positives.numel(), 4);
  EXPECT_EQ(s.negatives.numel(), 12);
  EXPECT_TRUE((matched.index_select(0, s.positives) >= 0).all().item<bool>());
  EXPECT_TRUE((matched.index_select(0, s.negatives) == -1).all().item<bool>());
  // neg_pos_ub bounds the negatives by the positives
  EXPECT_EQ(RandomSampler(16, 0.25, 2, true).sample(matched, {}).negatives.numel(), 8);

  const at::Tensor loss = at::arange(45, at::kFloat);  // candidate i has loss i
  OHEMSampler ohem(16, 0.25, -1, true);
  s = ohem.sample(matched, [&](const at::Tensor& idx) { return loss.index_select(0, idx); });
  EXPECT_TRUE(at::equal(s.positives, at::tensor({9, 8, 7, 6}, at::kLong)));
  EXPECT_TRUE(at::equal(s.negatives, at::arange(39, 27, -1, at::kLong)));
  EXPECT_NE(error_of([&] { ohem.sample(matched, {}); }).find("needs the candidates' losses"),
            std::string::npos);
}

TEST(FasterRCNN, TrainsOnATinyBatchAndPredictsInOriginalPixels) {
  torch::manual_seed(0);
  auto model = tiny();
  const Batch batch = two_image_batch();
  const auto totals = sgd_loss_totals(
      *model, batch, 80, {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}, 1);
  ASSERT_EQ(totals.size(), 80u);
  EXPECT_LT(totals.back(), 0.5 * totals.front());

  model->eval();
  Batch scaled = batch;
  for (auto& m : scaled.metas) {
    m.original_hw = {256, 256};  // the network input was resized by 0.5
    m.scale_x = m.scale_y = 0.5;
  }
  const auto dets = model->predict(scaled);
  ASSERT_EQ(dets.size(), 2u);
  for (const auto& d : dets) {
    ASSERT_GT(d.scores.numel(), 0);
    EXPECT_LE(d.scores.numel(), 100);
    EXPECT_TRUE((d.scores.slice(0, 1) <= d.scores.slice(0, 0, -1)).all().item<bool>());
    EXPECT_TRUE((d.boxes >= 0).all().item<bool>() && (d.boxes <= 256).all().item<bool>());
    EXPECT_TRUE((d.labels >= 0).all().item<bool>() && (d.labels < 3).all().item<bool>());
  }
  // the trained model finds image 1's object (label 0 at {30, 30, 110, 70}; x2 in original px):
  // its top detection is a COCO match (IoU >= 0.5). After 80 steps the box is still rough, and
  // how rough depends on the CPU's kernels (oneDNN AVX2 vs AVX512: corners 13.4 px off vs < 12).
  const at::Tensor top = dets[1].boxes[0] * 0.5;
  const at::Tensor gt = at::tensor({30.f, 30.f, 110.f, 70.f});
  EXPECT_EQ(dets[1].labels[0].item<int64_t>(), 0);
  const double iou = pairwise_box_iou(top.unsqueeze(0), gt.unsqueeze(0)).item<double>();
  EXPECT_GE(iou, 0.5) << "top box " << top;
}

TEST(FasterRCNN, ProposalsStayInsideTheImageAndWithinTheCap) {
  torch::manual_seed(1);
  auto model = tiny();
  model->eval();
  const Batch batch = two_image_batch();
  torch::NoGradGuard no_grad;
  const auto out = model->rpn().forward(model->extract_features(batch.images), batch, false);
  ASSERT_EQ(out.proposals.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_GT(out.proposals[i].size(0), 0);
    EXPECT_LE(out.proposals[i].size(0), 100);
    EXPECT_TRUE((out.proposals[i] >= 0).all().item<bool>());
    EXPECT_TRUE((out.proposals[i] <= 128).all().item<bool>());
    EXPECT_TRUE((out.scores[i] >= 0).all().item<bool>() && (out.scores[i] <= 1).all().item<bool>());
  }
}

TEST(FasterRCNN, ImageWithoutObjectsGivesFiniteLosses) {
  torch::manual_seed(2);
  auto model = tiny();
  Batch batch = two_image_batch();
  batch.boxes[1] = at::zeros({0, 4});
  batch.labels[1] = at::zeros({0}, at::kLong);
  model->train();
  const auto losses = model->losses(batch);
  for (const auto& [name, value] : losses) EXPECT_TRUE(std::isfinite(value.item<double>())) << name;
}

TEST(FasterRCNN, RelationHeadWithOhemAndEndToEndDuplicateRemoval) {
  torch::manual_seed(3);
  auto model = tiny(
      ", relations: [1, 1], relation: {num_heads: 4, key_dim: 8, geometry_dim: 16},"
      " class_agnostic: true,"
      " dedup_head: {type: DuplicateRemovalNet, embed_dim: 16, rank_dim: 32, top_n: 20,"
      "              relation: {num_heads: 4, key_dim: 8, geometry_dim: 16}}",
      "{type: OHEMSampler, num: 32, pos_fraction: 0.25}");
  const Batch batch = two_image_batch();
  const auto totals =
      sgd_loss_totals(*model, batch, 30,
                      {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_dedup"}, 1);
  ASSERT_EQ(totals.size(), 30u);
  EXPECT_LT(totals.back(), totals.front());
  model->train();
  const auto losses = model->losses(batch);
  // OHEM: at most num RoIs per image enter the losses
  EXPECT_LE(losses.at("num_rois").item<double>(), 64.0);

  // one checkpoint, several duplicate removals: learned, NMS, none
  model->eval();
  DuplicateRemovalConfig* dedup = model->duplicate_removal();
  ASSERT_NE(dedup, nullptr);
  dedup->type = "learned";
  const auto learned = model->predict(batch);
  dedup->type = "nms";
  const auto nms = model->predict(batch);
  dedup->type = "none";
  const auto none = model->predict(batch);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::isfinite(learned[i].scores).all().item<bool>());
    EXPECT_LE(nms[i].scores.numel(), none[i].scores.numel());
    EXPECT_TRUE(
        (learned[i].scores.slice(0, 1) <= learned[i].scores.slice(0, 0, -1)).all().item<bool>());
  }
}

TEST(FasterRCNN, FrozenDetectorTrainsOnlyTheDuplicateRemovalNetwork) {
  torch::manual_seed(4);
  auto model = tiny(
      ", dedup_head: {type: DuplicateRemovalNet, embed_dim: 16, rank_dim: 32, top_n: 20,"
      "  frozen_detector: true, relation: {num_heads: 4, key_dim: 8, geometry_dim: 16}}");
  const Batch batch = two_image_batch();
  std::map<std::string, at::Tensor> before;
  for (const auto& p : model->named_parameters()) before[p.key()] = p.value().clone();
  for (const auto& b : model->named_buffers()) before[b.key()] = b.value().clone();
  model->train();
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  for (int it = 0; it < 3; ++it) {
    const auto losses = model->losses(batch);
    ASSERT_EQ(losses.count("loss_dedup"), 1u);
    EXPECT_EQ(losses.count("loss_cls"), 0u);
    opt.zero_grad();
    losses.at("loss_dedup").backward();
    opt.step();
  }
  int changed_dedup = 0;
  for (const auto& p : model->named_parameters()) {
    const bool same = at::equal(before.at(p.key()), p.value());
    if (p.key().rfind("roi_heads.dedup_head.", 0) == 0) {
      changed_dedup += same ? 0 : 1;
    } else {
      EXPECT_TRUE(same) << p.key() << " changed although the detector is frozen";
    }
  }
  EXPECT_GT(changed_dedup, 0);
  // BatchNorm statistics untouched (the frozen detector runs in eval mode)
  for (const auto& b : model->named_buffers()) {
    EXPECT_TRUE(at::equal(before.at(b.key()), b.value())) << b.key();
  }
}

TEST(FasterRCNN, ConfigErrorsNameTheKeyPath) {
  EXPECT_NE(build_error(tiny_yaml(", relations: [1]")).find("roi_head.relations"),
            std::string::npos);
  EXPECT_NE(build_error(tiny_yaml(", test_cfg: {nms: {type: learned}}"))
                .find("type learned needs a dedup_head"),
            std::string::npos);
  EXPECT_NE(build_error(tiny_yaml("", "[[16], [32], [64], [128], [256]]",
                                  "{type: RandomSampler, pos_fraction: 1.5}"))
                .find("roi_head.sampler.pos_fraction: expected a value in [0, 1], got 1.5"),
            std::string::npos);
  EXPECT_NE(build_error(tiny_yaml("", "[[16], [32]]"))
                .find("anchor sizes for 2 levels but the neck gives 5"),
            std::string::npos);
  EXPECT_NE(build_error(tiny_yaml(", fc_dims: 3")).find("unknown key 'roi_head.fc_dims'"),
            std::string::npos);
}

}  // namespace
}  // namespace setdet
