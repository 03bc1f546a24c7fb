#include <gtest/gtest.h>
#include <torch/torch.h>

#include "setdet/config/config.h"
#include "setdet/layers/frozen_batch_norm.h"
#include "setdet/models/backbones/resnet.h"
#include "setdet/models/necks/fpn.h"
#include "testing.h"

namespace setdet {
namespace {

int64_t numel(const std::vector<at::Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel();
  return n;
}

using test_util::error_of;

TEST(ResNet, HalfWidthResNet18ShapesAndShapeSpecs) {
  torch::manual_seed(0);
  ResNet net(ResNetOptions(18).base_channels(32));
  const auto outs = net->forward(torch::randn({2, 3, 64, 96}));
  ASSERT_EQ(outs.size(), 3u);
  const std::vector<std::vector<int64_t>> expected{{2, 64, 8, 12}, {2, 128, 4, 6}, {2, 256, 2, 3}};
  const auto specs = net->output_shape();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(outs[i].sizes().vec(), expected[i]) << "level " << i;
    EXPECT_EQ(specs[i].channels, expected[i][1]);
    EXPECT_EQ(specs[i].stride, int64_t{8} << i);
  }
}

TEST(ResNet, ResNet50BodyMatchesTorchvisionParameterCountAndNames) {
  ResNet net(ResNetOptions(50));
  // torchvision 0.14.1: resnet50 without avgpool/fc (fcos_resnet50_fpn backbone.body) has
  // 159 parameter tensors, 23508032 parameters and a 318-entry state_dict.
  const auto params = net->parameters();
  EXPECT_EQ(params.size(), 159u);
  EXPECT_EQ(numel(params), 23508032);
  EXPECT_EQ(net->named_parameters().size() + net->named_buffers().size(), 318u);
  const auto named = net->named_parameters();
  const auto buffers = net->named_buffers();
  EXPECT_EQ(named["conv1.weight"].sizes().vec(), (std::vector<int64_t>{64, 3, 7, 7}));
  EXPECT_EQ(named["layer1.0.conv3.weight"].sizes().vec(), (std::vector<int64_t>{256, 64, 1, 1}));
  EXPECT_EQ(named["layer1.0.downsample.0.weight"].sizes().vec(),
            (std::vector<int64_t>{256, 64, 1, 1}));
  EXPECT_EQ(named["layer3.5.bn2.bias"].sizes().vec(), (std::vector<int64_t>{256}));
  EXPECT_EQ(named["layer4.2.conv3.weight"].sizes().vec(), (std::vector<int64_t>{2048, 512, 1, 1}));
  EXPECT_TRUE(buffers.contains("layer2.0.downsample.1.running_var"));
  const auto specs = net->output_shape();
  EXPECT_EQ(specs[0].channels, 512);
  EXPECT_EQ(specs[2].channels, 2048);
}

TEST(ResNet, ResNet18And34ParameterCounts) {
  // torchvision 0.14.1 resnet18 / resnet34 minus fc (513000 parameters): 11689512 - 513000 and
  // 21797672 - 513000.
  EXPECT_EQ(numel(ResNet(ResNetOptions(18))->parameters()), 11689512 - 513000);
  EXPECT_EQ(numel(ResNet(ResNetOptions(34))->parameters()), 21797672 - 513000);
}

TEST(ResNet, FrozenStagesHaveNoGradientAndStayInEvalMode) {
  ResNet net(ResNetOptions(18).base_channels(16).frozen_stages(1));
  net->train();
  const auto named = net->named_parameters();
  EXPECT_FALSE(named["conv1.weight"].requires_grad());
  EXPECT_FALSE(named["bn1.weight"].requires_grad());
  EXPECT_FALSE(named["layer1.1.conv2.weight"].requires_grad());
  EXPECT_TRUE(named["layer2.0.conv1.weight"].requires_grad());
  for (const auto& kv : net->named_modules()) {
    if (kv.key().rfind("layer1", 0) == 0 || kv.key() == "bn1") {
      EXPECT_FALSE(kv.value()->is_training()) << kv.key();
    }
    if (kv.key().rfind("layer2", 0) == 0) {
      EXPECT_TRUE(kv.value()->is_training()) << kv.key();
    }
  }
}

TEST(ResNet, FrozenBatchNormHasBuffersOnlyAndAppliesTheAffineMap) {
  ResNet net(ResNetOptions(18).base_channels(8).frozen_bn(true));
  for (const auto& kv : net->named_parameters()) {
    EXPECT_EQ(kv.key().find("bn"), std::string::npos) << kv.key();
  }
  EXPECT_TRUE(net->named_buffers().contains("layer1.0.bn1.running_mean"));
  EXPECT_FALSE(net->named_buffers().contains("layer1.0.bn1.num_batches_tracked"));

  FrozenBatchNorm2d bn(3);
  bn->weight.copy_(torch::tensor({1.0f, 2.0f, 0.5f}));
  bn->bias.copy_(torch::tensor({0.0f, 1.0f, -1.0f}));
  bn->running_mean.copy_(torch::tensor({0.5f, -1.0f, 2.0f}));
  bn->running_var.copy_(torch::tensor({4.0f, 1.0f, 0.25f}));
  const auto x = torch::randn({2, 3, 4, 5});
  const auto expected = (x - bn->running_mean.view({1, 3, 1, 1})) /
                            (bn->running_var.view({1, 3, 1, 1}) + 1e-5).sqrt() *
                            bn->weight.view({1, 3, 1, 1}) +
                        bn->bias.view({1, 3, 1, 1});
  EXPECT_TRUE(torch::allclose(bn->forward(x), expected, 1e-5, 1e-5));
}

TEST(ResNet, GroupNormBackboneIsPerImageAndKeepsTorchvisionNames) {
  torch::manual_seed(0);
  auto net = std::dynamic_pointer_cast<ResNetImpl>(BackboneRegistry().build(Config::parse(
      "{b: {type: ResNet, depth: 18, base_channels: 16, norm: GN, gn_groups: 8}}", "m.yaml")["b"]));
  ASSERT_TRUE(net);
  EXPECT_EQ(net->options().gn_groups(), 8);
  const auto params = net->named_parameters();
  EXPECT_TRUE(params.contains("bn1.weight"));
  EXPECT_TRUE(params.contains("layer2.0.downsample.1.bias"));
  EXPECT_EQ(net->named_buffers().size(), 0u);  // no running statistics
  auto* gn = net->named_modules()["layer3.1.bn2"]->as<torch::nn::GroupNorm>();
  ASSERT_NE(gn, nullptr);
  EXPECT_EQ(gn->options.num_groups(), 8);
  EXPECT_EQ(gn->options.num_channels(), 64);

  // Training mode: an image's features do not depend on the rest of its batch (BatchNorm's do).
  net->train();
  const auto images = torch::randn({3, 3, 64, 64});
  const auto batch = net->forward(images);
  const auto alone = net->forward(images.slice(0, 1, 2));
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_TRUE(torch::allclose(batch[i].slice(0, 1, 2), alone[i], 1e-4, 1e-5)) << i;
  }
  // Nothing to fold: inference after fuse_for_inference is the training-mode function.
  net->eval();
  net->fuse_for_inference();
  const auto fused = net->forward(images);
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_TRUE(torch::allclose(fused[i], batch[i], 1e-4, 1e-5)) << i;
  }

  const auto divide_msg = error_of([] {
    BackboneRegistry().build(Config::parse(
        "{b: {type: ResNet, depth: 18, base_channels: 24, norm: GN, gn_groups: 16}}",
        "m.yaml")["b"]);
  });
  EXPECT_NE(divide_msg.find("b.gn_groups (16) must divide base_channels (24)"), std::string::npos)
      << divide_msg;
  const auto orphan_msg = error_of([] {
    BackboneRegistry().build(
        Config::parse("{b: {type: ResNet, depth: 18, gn_groups: 16}}", "m.yaml")["b"]);
  });
  EXPECT_NE(orphan_msg.find("gn_groups needs norm: GN"), std::string::npos) << orphan_msg;
}

TEST(ResNet, ConfigErrorsNameTheKeyPath) {
  const auto msg = error_of([] {
    BackboneRegistry().build(Config::parse("{backbone: {type: ResNet, depth: 18, widht: 32}}",
                                           "model.yaml")["backbone"]);
  });
  EXPECT_NE(msg.find("model.yaml: unknown key 'backbone.widht'"), std::string::npos) << msg;
  const auto depth_msg = error_of([] {
    BackboneRegistry().build(Config::parse("{b: {type: ResNet, depth: 19}}", "m.yaml")["b"]);
  });
  EXPECT_NE(depth_msg.find("b.depth"), std::string::npos) << depth_msg;
  EXPECT_NE(depth_msg.find("19"), std::string::npos) << depth_msg;
  const auto type_msg = error_of(
      [] { BackboneRegistry().build(Config::parse("{b: {type: ResNeXt}}", "m.yaml")["b"]); });
  EXPECT_NE(type_msg.find("unknown backbone 'ResNeXt'"), std::string::npos) << type_msg;
}

TEST(FPN, ProducesP3ToP7WithTorchvisionNames) {
  torch::manual_seed(0);
  const std::vector<ShapeSpec> in{{64, 8}, {128, 16}, {256, 32}};
  FPN fpn(FPNOptions(in, 64).num_outs(5));
  const auto outs = fpn->forward({torch::randn({2, 64, 32, 32}), torch::randn({2, 128, 16, 16}),
                                  torch::randn({2, 256, 8, 8})});
  ASSERT_EQ(outs.size(), 5u);
  const auto specs = fpn->output_shape();
  for (size_t i = 0; i < 5; ++i) {
    const int64_t side = 32 >> i;
    EXPECT_EQ(outs[i].sizes().vec(), (std::vector<int64_t>{2, 64, side, side})) << i;
    EXPECT_EQ(specs[i].stride, int64_t{8} << i);
    EXPECT_EQ(specs[i].channels, 64);
  }
  const auto named = fpn->named_parameters();
  EXPECT_EQ(named["inner_blocks.2.0.weight"].sizes().vec(), (std::vector<int64_t>{64, 256, 1, 1}));
  EXPECT_EQ(named["layer_blocks.0.0.weight"].sizes().vec(), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(named["extra_blocks.p6.weight"].sizes().vec(), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(named["extra_blocks.p7.weight"].sizes().vec(), (std::vector<int64_t>{64, 64, 3, 3}));
}

TEST(FPN, ExtraLevelsFromC5AndTopDownIsNearestUpsampling) {
  const std::vector<ShapeSpec> in{{4, 8}, {6, 16}};
  FPN fpn(FPNOptions(in, 8).num_outs(3).extra_input("c5"));
  EXPECT_EQ(fpn->named_parameters()["extra_blocks.p6.weight"].sizes().vec(),
            (std::vector<int64_t>{8, 6, 3, 3}));
  EXPECT_FALSE(fpn->named_parameters().contains("extra_blocks.p7.weight"));
  // With identity-like 1x1 laterals and output convs replaced by a centre tap, P3 = lateral(C3) +
  // upsample(lateral(C4)).
  torch::NoGradGuard no_grad;
  for (auto& kv : fpn->named_parameters()) kv.value().zero_();
  auto named = fpn->named_parameters();
  named["inner_blocks.0.0.weight"].select(0, 0).select(0, 0).fill_(1.0);
  named["inner_blocks.1.0.weight"].select(0, 0).select(0, 0).fill_(1.0);
  named["layer_blocks.0.0.weight"][0][0][1][1] = 1.0;
  const auto c3 = torch::randn({1, 4, 4, 4});
  const auto c4 = torch::randn({1, 6, 2, 2});
  const auto outs = fpn->forward({c3, c4});
  const auto expected = c3[0][0] + c4[0][0].repeat_interleave(2, 0).repeat_interleave(2, 1);
  EXPECT_TRUE(torch::allclose(outs[0][0][0], expected, 1e-6, 1e-6));
  EXPECT_EQ(outs[2].sizes().vec(), (std::vector<int64_t>{1, 8, 1, 1}));
}

TEST(FPN, ConfigErrors) {
  const auto factory = NeckRegistry().build(
      Config::parse("{neck: {type: FPN, out_channels: 64, num_outs: 7}}", "m.yaml")["neck"]);
  const auto msg = error_of([&] { factory({{64, 8}, {128, 16}, {256, 32}}); });
  EXPECT_NE(msg.find("neck.num_outs"), std::string::npos) << msg;
  const auto key_msg = error_of([] {
    NeckRegistry().build(Config::parse("{neck: {type: FPN, out_channel: 64}}", "m.yaml")["neck"]);
  });
  EXPECT_NE(key_msg.find("'neck.out_channel'"), std::string::npos) << key_msg;
}

}  // namespace
}  // namespace setdet
