// Mixed-precision training: runner.autocast values, the guard, Float32GroupNorm and an FCOS
// trained under bfloat16 autocast.
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "detector_testing.h"
#include "setdet/engine/autocast.h"
#include "setdet/engine/runner.h"
#include "setdet/layers/float32_group_norm.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/models/detectors/fcos.h"

namespace setdet {
namespace {

using test_util::error_of;
using test_util::two_image_batch;

const char* kTinyFcos =
    "{type: FCOS, num_classes: 3,"
    " backbone: {type: ResNet, depth: 18, base_channels: 16, frozen_bn: false},"
    " neck: {type: FPN, out_channels: 32, num_outs: 5, extra_input: p5},"
    " head: {type: FCOSHead, num_convs: 2, channels: 32, gn_groups: 8}}";

std::shared_ptr<FCOSDetector> tiny_fcos() {
  return std::dynamic_pointer_cast<FCOSDetector>(
      DetectorRegistry().build(Config::parse(kTinyFcos, "fcos.yaml")));
}

TEST(Autocast, ParsesTheConfigValues) {
  EXPECT_EQ(parse_autocast("off", "r"), std::nullopt);
  EXPECT_EQ(parse_autocast("bfloat16", "r"), c10::ScalarType::BFloat16);
  EXPECT_EQ(parse_autocast("float16", "r"), c10::ScalarType::Half);
  EXPECT_EQ(parse_autocast("auto", "r").has_value(), cpu_has_native_bfloat16());
  EXPECT_EQ(error_of([] { parse_autocast("fp8", "runner.yaml: runner.autocast"); }),
            "runner.yaml: runner.autocast: unknown autocast 'fp8' (known: off, bfloat16, "
            "float16, auto)");

  const auto cfg = Config::parse("runner: {max_iters: 3, autocast: bfloat16}\n", "r.yaml");
  EXPECT_EQ(RunnerOptions::from_config(cfg["runner"]).autocast, c10::ScalarType::BFloat16);
  EXPECT_EQ(RunnerOptions::from_config(Config::parse("{max_iters: 3}", "r.yaml")).autocast,
            std::nullopt);
  const auto bad = Config::parse("runner: {max_iters: 3, autocast: half}\n", "r.yaml");
  EXPECT_NE(error_of([&] {
              RunnerOptions::from_config(bad["runner"]);
            }).find("r.yaml: runner.autocast: unknown autocast 'half'"),
            std::string::npos);
}

TEST(InferencePrecision, ParsesAndDetectorsRunTheirNetworkInBfloat16WithFloat32Outputs) {
  EXPECT_EQ(parse_precision("float32", "--precision"), std::nullopt);
  EXPECT_EQ(parse_precision("bfloat16", "--precision"), c10::ScalarType::BFloat16);
  EXPECT_EQ(error_of([] { parse_precision("fp16", "DetectorOptions.precision"); }),
            "DetectorOptions.precision: unknown precision 'fp16' (known: float32, bfloat16)");

  torch::manual_seed(5);
  auto model = tiny_fcos();
  model->eval();
  fuse_for_inference(*model);  // as setdet::Detector: the packed convolutions take bfloat16 too
  torch::NoGradGuard no_grad;
  const at::Tensor images = torch::randn({1, 3, 96, 128});
  const DenseHeadOutputs f32 = model->forward(images);
  model->set_inference_dtype(c10::ScalarType::BFloat16);
  const DenseHeadOutputs b16 = model->forward(images);
  EXPECT_FALSE(at::autocast::is_cpu_enabled());  // only inside the network
  ASSERT_EQ(f32.size(), b16.size());
  for (const auto& [name, levels] : f32) {
    for (size_t l = 0; l < levels.size(); ++l) {
      const at::Tensor& b = b16.at(name)[l];
      EXPECT_EQ(b.scalar_type(), at::kFloat) << name << " level " << l;
      const double scale = std::max(levels[l].abs().max().item<double>(), 1.0);
      const double diff = (b - levels[l]).abs().max().item<double>();
      EXPECT_LE(diff, 0.05 * scale) << name << " level " << l;  // bfloat16: 8 mantissa bits
      EXPECT_GT(diff, 0.0) << name << " level " << l << ": not computed in bfloat16";
    }
  }
  // detections decode from float32 maps: same kind of output
  const Batch batch = two_image_batch();
  for (const auto& d : model->predict(batch)) {
    EXPECT_EQ(d.boxes.scalar_type(), at::kFloat);
    EXPECT_EQ(d.scores.scalar_type(), at::kFloat);
  }
  // "float32" clears it; training mode ignores it
  model->set_inference_dtype(c10::ScalarType::Float);
  EXPECT_EQ(model->inference_dtype(), std::nullopt);
  EXPECT_TRUE(at::equal(model->forward(images).at("cls_logits")[0], f32.at("cls_logits")[0]));
  model->set_inference_dtype(c10::ScalarType::BFloat16);
  model->train();
  EXPECT_EQ(model->forward(images).at("cls_logits")[0].scalar_type(), at::kFloat);
  EXPECT_NE(error_of([&] { model->set_inference_dtype(c10::ScalarType::Half); })
                .find("Half inference is not available for this detector"),
            std::string::npos);
}

TEST(Autocast, GuardScopesAndRestoresTheState) {
  ASSERT_FALSE(at::autocast::is_cpu_enabled());
  auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3));
  const auto x = torch::randn({1, 3, 8, 8});
  {
    const AutocastGuard off(std::nullopt, c10::DeviceType::CPU);
    EXPECT_FALSE(at::autocast::is_cpu_enabled());
    EXPECT_EQ(conv->forward(x).scalar_type(), at::kFloat);
  }
  {
    const AutocastGuard outer(c10::ScalarType::BFloat16, c10::DeviceType::CPU);
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
    EXPECT_EQ(conv->forward(x).scalar_type(), at::kBFloat16);
    {
      const AutocastGuard inner(c10::ScalarType::BFloat16, c10::DeviceType::CPU);
      EXPECT_EQ(conv->forward(x).scalar_type(), at::kBFloat16);
    }
    EXPECT_TRUE(at::autocast::is_cpu_enabled());  // the inner guard restored the outer state
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(conv->forward(x).scalar_type(), at::kFloat);
  EXPECT_NE(error_of([] {
              AutocastGuard g(c10::ScalarType::Half, c10::DeviceType::CPU);
            }).find("float16 runs on CUDA only"),
            std::string::npos);
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
}

TEST(Autocast, Float32GroupNormNormalisesInItsParametersDtype) {
  torch::manual_seed(0);
  Float32GroupNorm ours(torch::nn::GroupNormOptions(4, 16));
  torch::nn::GroupNorm theirs(torch::nn::GroupNormOptions(4, 16));
  torch::NoGradGuard no_grad;
  ours->weight.uniform_(0.5, 1.5);
  ours->bias.uniform_(-1, 1);
  theirs->weight.copy_(ours->weight);
  theirs->bias.copy_(ours->bias);
  const auto x = torch::randn({2, 16, 5, 7}) * 3 + 1;
  // float32 input: exactly torch::nn::GroupNorm
  EXPECT_TRUE(torch::equal(ours->forward(x), theirs->forward(x)));
  // bfloat16 input (what an autocast convolution hands over): float32 output, statistics in
  // float32, equal to the float32 GroupNorm of the same (rounded) values
  const auto xb = x.to(at::kBFloat16);
  const auto y = ours->forward(xb);
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_TRUE(torch::equal(y, theirs->forward(xb.to(at::kFloat))));
  EXPECT_NE(error_of([&] { theirs->forward(xb); }), "");  // what LibTorch 1.13 does without it
}

TEST(Autocast, FcosTrainsUnderBfloat16) {
  torch::manual_seed(3);
  auto model = tiny_fcos();
  const Batch batch = two_image_batch();
  model->train();
  // Head outputs and losses are float32; the convolutions ran in bfloat16 (outputs close to,
  // but not equal to, the float32 forward).
  const auto ref = model->forward(batch.images);
  DenseHeadOutputs mixed;
  std::map<std::string, at::Tensor> losses;
  {
    const AutocastGuard guard(c10::ScalarType::BFloat16, c10::DeviceType::CPU);
    mixed = model->forward(batch.images);
    losses = model->losses(batch);
  }
  for (const auto& [name, maps] : mixed) {
    for (size_t l = 0; l < maps.size(); ++l) {
      EXPECT_EQ(maps[l].scalar_type(), at::kFloat) << name << " level " << l;
    }
  }
  const auto& a = mixed.at("cls_logits")[0];
  const auto& b = ref.at("cls_logits")[0];
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, 0.05 * b.abs().max().item<double>() + 1e-2);
  at::Tensor total = losses.at("loss_cls") + losses.at("loss_bbox") + losses.at("loss_centerness");
  EXPECT_EQ(total.scalar_type(), at::kFloat);
  total.backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().scalar_type(), at::kFloat) << p.key();
  }

  // And it learns: 30 SGD steps under autocast as in the float32 overfit test.
  torch::manual_seed(3);
  auto fresh = tiny_fcos();
  const auto totals =
      test_util::sgd_loss_totals(*fresh, batch, 30, {"loss_cls", "loss_bbox", "loss_centerness"}, 1,
                                 c10::ScalarType::BFloat16);
  ASSERT_EQ(totals.size(), 30u);
  EXPECT_LT(totals.back(), 0.6 * totals.front());
}

}  // namespace
}  // namespace setdet
