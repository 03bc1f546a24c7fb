#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "detector_testing.h"
#include "setdet/assign/max_iou_assigner.h"
#include "setdet/config/config.h"
#include "setdet/data/transforms.h"
#include "setdet/models/detectors/retinanet.h"
#include "setdet/structures/anchors.h"
#include "setdet/structures/box_coder.h"

namespace setdet {
namespace {

using test_util::meta;
using test_util::two_image_batch;

AnchorGenerator torchvision_anchors() {
  return AnchorGenerator(anchor_generator_options_from_config(Config::parse("{}", "a.yaml")));
}

at::Tensor rows(std::initializer_list<std::array<float, 4>> r) {
  std::vector<float> flat;
  for (const auto& b : r) flat.insert(flat.end(), b.begin(), b.end());
  return torch::tensor(flat).reshape({-1, 4});
}

// Golden values: torchvision 0.14.1, retinanet._default_anchorgen() (AnchorGenerator.sizes,
// cell_anchors, and its forward on an 800 x 1088 batch with grids 100x136 ... 7x9).
TEST(Anchors, SizesAndBaseAnchorsMatchTorchvision) {
  const AnchorGenerator gen = torchvision_anchors();
  const std::vector<std::vector<double>> sizes{
      {32, 40, 50}, {64, 80, 101}, {128, 161, 203}, {256, 322, 406}, {512, 645, 812}};
  EXPECT_EQ(gen.options().sizes(), sizes);
  EXPECT_EQ(gen.num_anchors(), 9);
  EXPECT_TRUE(torch::equal(gen.base_anchors(0), rows({{-23, -11, 23, 11},
                                                      {-28, -14, 28, 14},
                                                      {-35, -18, 35, 18},
                                                      {-16, -16, 16, 16},
                                                      {-20, -20, 20, 20},
                                                      {-25, -25, 25, 25},
                                                      {-11, -23, 11, 23},
                                                      {-14, -28, 14, 28},
                                                      {-18, -35, 18, 35}})));
  EXPECT_TRUE(torch::equal(gen.base_anchors(4), rows({{-362, -181, 362, 181},
                                                      {-456, -228, 456, 228},
                                                      {-574, -287, 574, 287},
                                                      {-256, -256, 256, 256},
                                                      {-322, -322, 322, 322},
                                                      {-406, -406, 406, 406},
                                                      {-181, -362, 181, 362},
                                                      {-228, -456, 228, 456},
                                                      {-287, -574, 287, 574}})));
}

TEST(Anchors, GridUsesTorchvisionStridesOnUnevenLevels) {
  const AnchorGenerator gen = torchvision_anchors();
  const auto levels = gen.grid_anchors({{100, 136}, {50, 68}, {25, 34}, {13, 17}, {7, 9}},
                                       {800, 1088}, {8, 16, 32, 64, 128});
  int64_t total = 0;
  for (const auto& l : levels) total += l.size(0);
  EXPECT_EQ(total, 163206);
  // P6 at row 2, column 3: strides 800 // 13 = 61 and 1088 // 17 = 64.
  EXPECT_TRUE(torch::equal(levels[3].narrow(0, (2 * 17 + 3) * 9, 9), rows({{11, 31, 373, 213},
                                                                           {-36, 8, 420, 236},
                                                                           {-95, -22, 479, 266},
                                                                           {64, -6, 320, 250},
                                                                           {31, -39, 353, 283},
                                                                           {-11, -81, 395, 325},
                                                                           {101, -59, 283, 303},
                                                                           {78, -106, 306, 350},
                                                                           {48, -165, 336, 409}})));
  EXPECT_TRUE(
      torch::equal(levels[4][(1 * 9 + 1) * 9], torch::tensor({-242.f, -67.f, 482.f, 295.f})));
  // With nominal strides (MMDetection) P6's row 2, column 3 anchors centre on (192, 128).
  AnchorGeneratorOptions mm = gen.options();
  mm.image_over_grid_stride(false).round_base(false);
  const auto nominal = AnchorGenerator(mm).grid_anchors(
      {{100, 136}, {50, 68}, {25, 34}, {13, 17}, {7, 9}}, {800, 1088}, {8, 16, 32, 64, 128});
  const auto a = nominal[3][(2 * 17 + 3) * 9 + 4];  // ratio 1, size 322
  EXPECT_NEAR(a[0].item<float>(), 192 - 161, 1e-4);
  EXPECT_NEAR(a[1].item<float>(), 128 - 161, 1e-4);
}

TEST(BoxCoder, EncodeDecodeRoundTripAndClamp) {
  const DeltaXYWHBoxCoder coder;
  const auto anchors = rows({{0, 0, 10, 10}, {5, 5, 25, 45}});
  const auto boxes = rows({{2, -1, 14, 9}, {0, 10, 30, 30}});
  const auto deltas = coder.encode(anchors, boxes);
  // hand-computed: centre shift / anchor size, log of the size ratio
  EXPECT_NEAR(deltas[0][0].item<float>(), 0.3, 1e-6);
  EXPECT_NEAR(deltas[0][1].item<float>(), -0.1, 1e-6);
  EXPECT_NEAR(deltas[0][2].item<float>(), std::log(1.2), 1e-6);
  EXPECT_NEAR(deltas[1][3].item<float>(), std::log(0.5), 1e-6);
  EXPECT_TRUE(torch::allclose(coder.decode(deltas, anchors), boxes, 1e-5, 1e-4));
  // dw above log(1000 / 16) is clamped: width at most 62.5 x the anchor's.
  const auto big = coder.decode(torch::tensor({{0.f, 0.f, 50.f, 0.f}}), rows({{0, 0, 10, 10}}));
  EXPECT_NEAR((big[0][2] - big[0][0]).item<float>(), 625.0, 1e-2);
  const DeltaXYWHBoxCoder weighted({10, 10, 5, 5});
  EXPECT_TRUE(torch::allclose(weighted.decode(weighted.encode(anchors, boxes), anchors), boxes,
                              1e-5, 1e-4));
}

TEST(MaxIoUAssigner, ThresholdsIgnoreBandAndLowQualityMatches) {
  const MaxIoUAssigner assigner;
  const auto gt = rows({{0, 0, 10, 10}, {100, 100, 110, 110}});
  // IoU with gt 0: 1, 0.6, 0.45 (ignored), 0.2 (negative); anchor 4 overlaps gt 1 by 0.3 only,
  // but it is gt 1's best anchor, so it becomes positive for gt 1; anchor 5 overlaps nothing.
  const auto anchors = rows({{0, 0, 10, 10},
                             {0, 0, 10, 6},
                             {0, 0, 4.5, 10},
                             {0, 0, 2, 10},
                             {100, 100, 103, 110},
                             {50, 50, 60, 60}});
  const auto m = assigner.assign(anchors, gt);
  EXPECT_TRUE(torch::equal(m, torch::tensor(std::vector<int64_t>{
                                  0, 0, kAnchorIgnored, kAnchorNegative, 1, kAnchorNegative})));
  MaxIoUAssignerOptions strict;
  strict.allow_low_quality_matches(false);
  EXPECT_EQ(MaxIoUAssigner(strict).assign(anchors, gt)[4].item<int64_t>(), kAnchorNegative);
  // Ties: both anchors of equal best IoU with the GT are claimed.
  const auto tied =
      MaxIoUAssigner().assign(rows({{0, 0, 3, 10}, {7, 0, 10, 10}}), rows({{0, 0, 10, 10}}));
  EXPECT_TRUE(torch::equal(tied, torch::tensor({0, 0}, torch::kLong)));
  // An anchor assigned to the GT it overlaps most.
  const auto two =
      MaxIoUAssigner().assign(rows({{0, 0, 10, 10}}), rows({{0, 0, 10, 7}, {0, 0, 10, 9}}));
  EXPECT_EQ(two[0].item<int64_t>(), 1);
}

TEST(MaxIoUAssigner, EmptyCasesAndErrors) {
  const MaxIoUAssigner assigner;
  const auto none = assigner.assign(rows({{0, 0, 1, 1}, {2, 2, 3, 3}}), torch::zeros({0, 4}));
  EXPECT_TRUE(torch::equal(none, torch::full({2}, kAnchorNegative, torch::kLong)));
  EXPECT_EQ(assigner.assign(torch::zeros({0, 4}), rows({{0, 0, 1, 1}})).numel(), 0);
  EXPECT_THROW(assigner.assign(torch::zeros({3, 5}), rows({{0, 0, 1, 1}})), c10::Error);
  EXPECT_THROW(
      AnchorAssignerRegistry().build(Config::parse(
          "{a: {type: MaxIoUAssigner, pos_iou_thr: 0.3, neg_iou_thr: 0.4}}", "a.yaml")["a"]),
      Error);
}

const char* kSmallRetinaNet =
    "{type: RetinaNet, num_classes: 3,"
    " backbone: {type: ResNet, depth: 18, base_channels: 32, frozen_bn: false},"
    " neck: {type: FPN, out_channels: 64, num_outs: 5},"
    " head: {type: RetinaHead, num_convs: 2, channels: 64},"
    " anchor_generator: {base_sizes: [16, 32, 64, 128, 256]},"
    " test_cfg: {score_thr: 0.05, nms_thr: 0.5, max_per_img: 50, pre_nms_top_k: 200}}";

TEST(RetinaNet, StateDictMirrorsTorchvisionNames) {
  auto model = DetectorRegistry().build(Config::parse(kSmallRetinaNet, "m.yaml"));
  const auto params = model->named_parameters();
  for (const char* name :
       {"head.classification_head.conv.0.0.weight", "head.classification_head.conv.1.0.bias",
        "head.classification_head.cls_logits.weight", "head.regression_head.conv.0.0.weight",
        "head.regression_head.bbox_reg.bias", "backbone.fpn.extra_blocks.p7.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  EXPECT_EQ(params["head.classification_head.cls_logits.weight"].size(0), 9 * 3);
  EXPECT_EQ(params["head.regression_head.bbox_reg.weight"].size(0), 9 * 4);
  EXPECT_NEAR(params["head.classification_head.cls_logits.bias"][0].item<float>(), -std::log(99.0),
              1e-5);
}

TEST(RetinaNet, ForwardNetworkFlattensTheHeadOutputs) {
  torch::manual_seed(4);
  auto model = DetectorRegistry().build(Config::parse(kSmallRetinaNet, "m.yaml"));
  model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor images = torch::randn({1, 3, 64, 64});
  const std::vector<at::Tensor> maps = model->forward_network(images);
  const DenseHeadOutputs named = dynamic_cast<RetinaNetDetector&>(*model).forward(images);
  ASSERT_EQ(maps.size(), 10u);  // bbox_deltas then cls_logits, 5 levels each
  for (size_t l = 0; l < 5; ++l) {
    EXPECT_TRUE(maps[l].equal(named.at("bbox_deltas")[l]));
    EXPECT_TRUE(maps[5 + l].equal(named.at("cls_logits")[l]));
  }
  EXPECT_EQ(maps[5].size(1), 9 * 3);  // A x K logits on P3
}

TEST(RetinaNet, LossFallsInSixtySteps) {
  torch::manual_seed(1);
  auto model = DetectorRegistry().build(Config::parse(kSmallRetinaNet, "m.yaml"));
  // min_pos 3: every GT has at least its best anchor
  const auto totals =
      test_util::sgd_loss_totals(*model, two_image_batch(), 60, {"loss_cls", "loss_bbox"}, 3);
  ASSERT_EQ(totals.size(), 60u);
  EXPECT_LT(totals.back(), 0.6 * totals.front());
}

TEST(RetinaNet, EmptyImageLossesAndPredictBackToOriginal) {
  torch::manual_seed(2);
  auto model = DetectorRegistry().build(Config::parse(
      std::string(kSmallRetinaNet)
          .replace(std::string(kSmallRetinaNet).find("}}"), 2, "}, loss_bbox: {type: GIoULoss}}"),
      "m.yaml"));
  Batch b;
  b.images = torch::randn({1, 3, 64, 96});
  b.boxes = {torch::zeros({0, 4})};
  b.labels = {torch::zeros({0}, torch::kLong)};
  b.metas = {meta(64, 96)};
  auto losses = model->losses(b);
  EXPECT_EQ(losses["num_pos"].item<double>(), 0);
  EXPECT_EQ(losses["loss_bbox"].item<double>(), 0);
  (losses["loss_cls"] + losses["loss_bbox"]).backward();
  EXPECT_TRUE(std::isfinite(losses["loss_cls"].item<double>()));

  model->eval();
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["head.classification_head.cls_logits.bias"].zero_();
  }
  Batch scaled = b;
  scaled.metas[0].original_hw = {128, 240};
  scaled.metas[0].scale_x = 0.4;
  scaled.metas[0].scale_y = 0.5;
  const Detections d0 = model->predict(b).at(0);
  const Detections d1 = model->predict(scaled).at(0);
  ASSERT_GT(d0.scores.numel(), 0);
  EXPECT_LE(d0.scores.numel(), 50);
  EXPECT_TRUE(torch::equal(d0.scores, d1.scores));
  EXPECT_TRUE((d0.scores.slice(0, 1) <= d0.scores.slice(0, 0, -1)).all().item<bool>());
  EXPECT_TRUE((d0.boxes.select(1, 2) <= 96).all().item<bool>() &&
              (d0.boxes.select(1, 3) <= 64).all().item<bool>());
  const auto expected = torch::stack({d0.boxes.select(1, 0) / 0.4, d0.boxes.select(1, 1) / 0.5,
                                      d0.boxes.select(1, 2) / 0.4, d0.boxes.select(1, 3) / 0.5},
                                     1);
  EXPECT_TRUE(torch::allclose(d1.boxes, expected, 1e-5, 1e-3));
}

TEST(RetinaNet, ConfigErrorsNameTheKeyPath) {
  const auto error_of = test_util::build_error;
  const std::string base(kSmallRetinaNet);
  const auto with = [&](const std::string& extra) {
    return base.substr(0, base.size() - 1) + ", " + extra + "}";
  };
  EXPECT_NE(error_of(with("anchor_generator2: {}")).find("unknown key"), std::string::npos);
  const std::string e1 = error_of(
      "{type: RetinaNet, num_classes: 3, backbone: {type: ResNet, depth: 18, base_channels: 32},"
      " neck: {type: FPN, out_channels: 64, num_outs: 5}, head: {type: RetinaHead, num_anchors: "
      "3}}");
  EXPECT_NE(e1.find("num_anchors"), std::string::npos) << e1;
  const std::string e2 = error_of(
      "{type: RetinaNet, num_classes: 3, backbone: {type: ResNet, depth: 18, base_channels: 32},"
      " neck: {type: FPN, out_channels: 64, num_outs: 5}, head: {type: RetinaHead},"
      " anchor_generator: {base_sizes: [32, 64]}}");
  EXPECT_NE(e2.find("anchor_generator"), std::string::npos) << e2;
}

TEST(TorchvisionResize, SizesScaleAndBoxesAsTorchvision) {
  // torchvision 0.14.1 GeneralizedRCNNTransform(800, 1333): a 576 x 768 image becomes 800 x 1066.
  const auto t = TransformRegistry().build(Config::parse(
      "{a: {type: TorchvisionResize, min_size: 800, max_size: 1333}}", "p.yaml")["a"]);
  Sample s;
  s.image = cv::Mat(576, 768, CV_8UC3, cv::Scalar(0, 128, 255));  // BGR
  s.boxes = {{{0.f, 0.f, 768.f, 576.f}}};
  s.labels = {0};
  s.meta.original_hw = {576, 768};
  Rng rng({0});
  t->apply(s, rng);
  EXPECT_EQ(s.image.rows, 800);
  EXPECT_EQ(s.image.cols, 1066);
  EXPECT_EQ(s.image.type(), CV_32FC3);
  EXPECT_NEAR(s.boxes[0][2], 1066.f, 1e-3);
  EXPECT_NEAR(s.boxes[0][3], 800.f, 1e-3);
  EXPECT_DOUBLE_EQ(s.meta.scale_x, 1066.0 / 768.0);
  // constant image: RGB (255, 128, 0) / 255 normalised with ImageNet mean / std
  const auto px = s.image.at<cv::Vec3f>(400, 500);
  EXPECT_NEAR(px[0], (1.0 - 0.485) / 0.229, 1e-5);
  EXPECT_NEAR(px[1], (128 / 255.0 - 0.456) / 0.224, 1e-5);
  EXPECT_NEAR(px[2], (0.0 - 0.406) / 0.225, 1e-5);
  Sample wrong;
  wrong.image = cv::Mat(4, 4, CV_32FC3);
  EXPECT_THROW(t->apply(wrong, rng), Error);
}

}  // namespace
}  // namespace setdet
