#include <gtest/gtest.h>
#include <torch/torch.h>

#include "detector_testing.h"
#include "setdet/config/config.h"
#include "setdet/models/detectors/fcos.h"

namespace setdet {
namespace {

using test_util::meta;
using test_util::two_image_batch;
// The detector-building error of a model YAML.
const auto error_of = test_util::build_error;

const char* kDemoModel =
    "{type: FCOS, num_classes: 7,"
    " backbone: {type: ResNet, depth: 18, base_channels: 32, frozen_bn: false},"
    " neck: {type: FPN, out_channels: 64, num_outs: 5},"
    " head: {type: FCOSHead, num_convs: 2, channels: 64},"
    " assigner: {type: FCOSAssigner, regress_ranges: [[-1, 64], [64, 128], [128, 256], [256, 512], "
    "[512, .inf]]},"
    " test_cfg: {score_thr: 0.05, nms_thr: 0.6, max_per_img: 100, pre_nms_top_k: 1000}}";

std::shared_ptr<FCOSDetector> demo_model() {
  return std::dynamic_pointer_cast<FCOSDetector>(
      DetectorRegistry().build(Config::parse(kDemoModel, "demo.yaml")));
}

TEST(FCOS, HeadOutputShapesPerLevel) {
  torch::manual_seed(0);
  auto model = demo_model();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->num_classes(), 7);
  const auto out = model->forward(torch::randn({2, 3, 128, 96}));
  for (const auto* name : {"cls_logits", "bbox_distances", "centerness"}) {
    const auto& maps = out.at(name);
    ASSERT_EQ(maps.size(), 5u) << name;
    const int64_t k = std::string(name) == "cls_logits"   ? 7
                      : std::string(name) == "centerness" ? 1
                                                          : 4;
    for (int64_t l = 0; l < 5; ++l) {
      const int64_t s = int64_t{8} << l;
      EXPECT_EQ(maps[l].sizes().vec(),
                (std::vector<int64_t>{2, k, (128 + s - 1) / s, (96 + s - 1) / s}))
          << name << " level " << l;
    }
  }
  EXPECT_TRUE((out.at("bbox_distances")[0] >= 0).all().item<bool>());
  // prior probability 0.01 on the classification bias
  const auto bias = model->named_parameters()["head.classification_head.cls_logits.bias"];
  EXPECT_NEAR(bias[0].item<double>(), -std::log(99.0), 1e-6);
}

TEST(FCOS, StateDictMirrorsTorchvisionFcosResnet50Fpn) {
  auto model = std::dynamic_pointer_cast<FCOSDetector>(DetectorRegistry().build(Config::parse(
      "{type: FCOS, num_classes: 91, backbone: {type: ResNet, depth: 50}, neck: {type: FPN, "
      "out_channels: 256}, head: {type: FCOSHead, num_convs: 4}}")));
  const auto params = model->named_parameters();
  const auto buffers = model->named_buffers();
  // torchvision 0.14.1 fcos_resnet50_fpn(num_classes=91, weights=None, weights_backbone=None):
  // 213 parameter tensors holding 32322720 values, 372 state_dict entries. setdet adds one
  // tensor, head.scales [5] (FCOS's per-level Scale).
  int64_t n = 0;
  for (const auto& kv : params) n += kv.value().numel();
  EXPECT_EQ(params.size(), 214u);
  EXPECT_EQ(n, 32322720 + 5);
  EXPECT_EQ(params.size() + buffers.size(), 373u);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected{
      {"backbone.body.conv1.weight", {64, 3, 7, 7}},
      {"backbone.body.layer1.0.downsample.0.weight", {256, 64, 1, 1}},
      {"backbone.fpn.inner_blocks.0.0.weight", {256, 512, 1, 1}},
      {"backbone.fpn.inner_blocks.2.0.bias", {256}},
      {"backbone.fpn.layer_blocks.1.0.weight", {256, 256, 3, 3}},
      {"backbone.fpn.extra_blocks.p6.weight", {256, 256, 3, 3}},
      {"backbone.fpn.extra_blocks.p7.bias", {256}},
      {"head.classification_head.conv.0.weight", {256, 256, 3, 3}},
      {"head.classification_head.conv.10.weight", {256}},
      {"head.classification_head.cls_logits.weight", {91, 256, 3, 3}},
      {"head.regression_head.conv.9.bias", {256}},
      {"head.regression_head.bbox_reg.weight", {4, 256, 3, 3}},
      {"head.regression_head.bbox_ctrness.weight", {1, 256, 3, 3}},
      {"head.scales", {5}}};
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(params.contains(name)) << name;
    EXPECT_EQ(params[name].sizes().vec(), shape) << name;
  }
  EXPECT_TRUE(buffers.contains("backbone.body.layer4.2.bn3.num_batches_tracked"));
}

TEST(FCOS, OverfitsTwoImagesInThirtyIterations) {
  torch::manual_seed(1);
  auto model = demo_model();
  const auto totals = test_util::sgd_loss_totals(*model, two_image_batch(5), 30,
                                                 {"loss_cls", "loss_bbox", "loss_centerness"}, 1);
  ASSERT_EQ(totals.size(), 30u);
  EXPECT_LT(totals.back(), 0.6 * totals.front());
}

TEST(FCOS, ImagesWithoutObjectsGiveFiniteLossesAndGradients) {
  torch::manual_seed(2);
  auto model = demo_model();
  Batch b;
  b.images = torch::randn({1, 3, 64, 64});
  b.boxes = {torch::zeros({0, 4})};
  b.labels = {torch::zeros({0}, torch::kLong)};
  b.metas = {meta(64, 64)};
  auto losses = model->losses(b);
  EXPECT_EQ(losses["num_pos"].item<double>(), 0);
  EXPECT_EQ(losses["loss_bbox"].item<double>(), 0);
  const auto total = losses["loss_cls"] + losses["loss_bbox"] + losses["loss_centerness"];
  total.backward();
  EXPECT_TRUE(std::isfinite(total.item<double>()));
}

TEST(FCOS, PredictMapsBoxesBackToTheOriginalImage) {
  torch::manual_seed(3);
  auto model = demo_model();
  model->eval();
  // The same 96x128 network input twice: first as an unscaled original; then as coming from a
  // 192x320 original resized by (0.5 in y, 0.4 in x) and flipped horizontally.
  Batch b;
  b.images = torch::randn({1, 3, 96, 128});
  b.boxes = {torch::zeros({0, 4})};
  b.labels = {torch::zeros({0}, torch::kLong)};
  b.metas = {meta(96, 128)};
  Batch flipped = b;
  ImageMeta& m1 = flipped.metas[0];
  m1.original_hw = {192, 320};
  m1.scale_x = 0.4;
  m1.scale_y = 0.5;
  m1.flipped = true;
  const auto det0 = model->predict(b);
  const auto det1 = model->predict(flipped);
  ASSERT_EQ(det0.size(), 1u);
  ASSERT_EQ(det1.size(), 1u);
  const Detections& d0 = det0[0];
  const Detections& d1 = det1[0];
  ASSERT_GT(d0.boxes.size(0), 0);
  EXPECT_LE(d0.boxes.size(0), 100);
  EXPECT_TRUE(torch::equal(d0.scores, d1.scores));
  EXPECT_TRUE(torch::equal(d0.labels, d1.labels));
  EXPECT_TRUE((d0.scores.slice(0, 1) <= d0.scores.slice(0, 0, -1)).all().item<bool>());
  EXPECT_TRUE((d0.labels >= 0).all().item<bool>() && (d0.labels < 7).all().item<bool>());
  const auto b0 = d0.boxes;  // input pixels == original pixels for the first meta
  EXPECT_TRUE((b0.select(1, 0) >= 0).all().item<bool>() &&
              (b0.select(1, 2) <= 128).all().item<bool>());
  EXPECT_TRUE((b0.select(1, 3) <= 96).all().item<bool>());
  const auto expected = torch::stack({(128 - b0.select(1, 2)) / 0.4, b0.select(1, 1) / 0.5,
                                      (128 - b0.select(1, 0)) / 0.4, b0.select(1, 3) / 0.5},
                                     1);
  EXPECT_TRUE(torch::allclose(d1.boxes, expected, 1e-4, 1e-3));
}

TEST(FCOS, BoxesToOriginalUndoesFlipThenScaleAndClips) {
  ImageMeta m = meta(80, 100);
  m.original_hw = {160, 150};
  m.scale_x = 0.5;
  m.scale_y = 0.5;
  m.flipped = true;
  const auto out =
      boxes_to_original(torch::tensor({{10.f, 20.f, 30.f, 40.f}, {0.f, 0.f, 100.f, 80.f}}), m);
  // unflip about width 100: [70, 20, 90, 40] -> / 0.5 -> [140, 40, 180, 80], x clipped to 150.
  EXPECT_TRUE(
      torch::allclose(out, torch::tensor({{140.f, 40.f, 150.f, 80.f}, {0.f, 0.f, 150.f, 160.f}})));
}

TEST(FCOS, ConfigErrorsNameTheKeyPath) {
  EXPECT_NE(
      error_of(
          "{type: FCOS, num_classes: 3, backbone: {type: ResNet, depth: 18}, neck: {type: FPN},"
          " head: {type: FCOSHead, num_conv: 2}}")
          .find("unknown key 'head.num_conv'"),
      std::string::npos);
  EXPECT_NE(
      error_of(
          "{type: FCOS, num_classes: 3, backbone: {type: ResNet, depth: 18}, neck: {type: FPN},"
          " head: {type: FCOSHead}, tset_cfg: {}}")
          .find("unknown key 'tset_cfg'"),
      std::string::npos);
  EXPECT_NE(error_of("{type: FCOS, num_classes: 3, backbone: {type: VGG}, neck: {type: FPN}, head: "
                     "{type: FCOSHead}}")
                .find("backbone.type: unknown backbone 'VGG'"),
            std::string::npos);
  EXPECT_NE(
      error_of(
          "{type: FCOS, num_classes: 3, backbone: {type: ResNet, depth: 18}, neck: {type: FPN},"
          " head: {type: FCOSHead}, assigner: {type: FCOSAssigner, regress_ranges: [[-1, 64]]}}")
          .find("regress_ranges has 1 entries but the neck gives 5 levels"),
      std::string::npos);
  EXPECT_NE(
      error_of(
          "{type: FCOS, num_classes: 3, backbone: {type: ResNet, depth: 18}, neck: {type: FPN},"
          " head: {type: FCOSHead, gn_groups: 7}}")
          .find("head.gn_groups"),
      std::string::npos);
  EXPECT_NE(
      error_of("{type: FCOS, backbone: {type: ResNet}, neck: {type: FPN}, head: {type: FCOSHead}}")
          .find("num_classes"),
      std::string::npos);
  EXPECT_NE(
      error_of(
          "{type: FCOS, num_classes: 3, backbone: {type: ResNet, depth: 18}, neck: {type: FPN},"
          " head: {type: FCOSHead}, loss_cls: {type: FocalLoss, gama: 2}}")
          .find("unknown key 'loss_cls.gama'"),
      std::string::npos);
}

}  // namespace
}  // namespace setdet
