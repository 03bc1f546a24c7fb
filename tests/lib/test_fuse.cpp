#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>
#include <string>

#include "setdet/layers/frozen_batch_norm.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/layers/packed_conv2d.h"
#include "setdet/models/backbones/resnet.h"
#include "setdet/models/detector.h"

namespace setdet {
namespace {

// Non-trivial norm statistics and affine parameters, as in a trained network.
void randomise_norms(torch::nn::Module& net, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& m : net.modules()) {
    if (auto* f = m->as<FrozenBatchNorm2d>()) {
      f->weight.uniform_(0.5, 1.5);
      f->bias.normal_(0, 0.2);
      f->running_mean.normal_(0, 0.3);
      f->running_var.uniform_(0.5, 2.0);
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.normal_(0, 0.2);
      bn->running_mean.normal_(0, 0.3);
      bn->running_var.uniform_(0.5, 2.0);
    }
  }
}

std::set<std::string> state_names(const torch::nn::Module& net) {
  std::set<std::string> names;
  for (const auto& p : net.named_parameters()) names.insert(p.key());
  for (const auto& b : net.named_buffers()) names.insert(b.key());
  return names;
}

void expect_close(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].sizes(), b[i].sizes());
    // Relative to the map's scale: folding changes float rounding only.
    const double scale = std::max(a[i].abs().max().item<double>(), 1.0);
    EXPECT_LE((a[i] - b[i]).abs().max().item<double>(), tol * scale) << "output " << i;
  }
}

int64_t count_fused_blocks(torch::nn::Module& net) {
  int64_t n = 0;
  for (auto& m : net.modules()) {
    if (auto* b = m->as<Bottleneck>()) n += b->fused();
    if (auto* b = m->as<BasicBlock>()) n += b->fused();
  }
  return n;
}

TEST(FuseForInference, ResNet50FrozenBnMatchesUnfusedAndKeepsStateNames) {
  for (uint64_t seed : {1u, 2u}) {
    torch::manual_seed(seed);
    ResNet net(ResNetOptions(50).base_channels(16).frozen_bn(true).out_indices({0, 1, 2, 3}));
    randomise_norms(*net, seed + 10);
    net->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor x = torch::randn({2, 3, 64, 96});
    const auto names_before = state_names(*net);
    const auto ref = net->forward(x);
    EXPECT_EQ(fuse_for_inference(*net), 1);
    EXPECT_EQ(count_fused_blocks(*net), 16);
    const auto fused = net->forward(x);
    expect_close(ref, fused, 1e-4);
    EXPECT_EQ(state_names(*net), names_before);
    // The fused path must not be the unfused one in disguise: outputs differ by rounding only,
    // and they are not all bitwise equal.
    bool any_diff = false;
    for (size_t i = 0; i < ref.size(); ++i) any_diff |= !torch::equal(ref[i], fused[i]);
    EXPECT_TRUE(any_diff);
  }
}

TEST(FuseForInference, ResNet18BatchNormEvalStatisticsAndChannelsLast) {
  torch::manual_seed(3);
  ResNet net(ResNetOptions(18).base_channels(16).frozen_bn(false));
  randomise_norms(*net, 4);
  net->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({1, 3, 96, 64});
  const auto ref = net->forward(x);
  net->fuse_for_inference();
  expect_close(ref, net->forward(x), 1e-4);
  const auto cl = net->forward(x.contiguous(at::MemoryFormat::ChannelsLast));
  expect_close(ref, cl, 1e-4);
  EXPECT_TRUE(cl.back().is_contiguous(at::MemoryFormat::ChannelsLast));
}

TEST(FuseForInference, RefusesTrainingModeAndTrainingDropsTheFolding) {
  torch::manual_seed(5);
  ResNet net(ResNetOptions(18).base_channels(8).frozen_bn(true));
  net->train();
  try {
    fuse_for_inference(*net);
    FAIL() << "expected an error in training mode";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval()"), std::string::npos) << e.what();
  }
  net->eval();
  fuse_for_inference(*net);
  EXPECT_EQ(count_fused_blocks(*net), 8);
  net->train();
  EXPECT_EQ(count_fused_blocks(*net), 0);
}

TEST(FuseForInference, WeightsChangedAfterFusionAreRefolded) {
  torch::manual_seed(6);
  ResNet net(ResNetOptions(50).base_channels(8).frozen_bn(true));
  randomise_norms(*net, 7);
  net->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({1, 3, 64, 64});
  fuse_for_inference(*net);
  const auto before = net->forward(x);
  // As load_state_dict does: in-place copies into the registered tensors.
  randomise_norms(*net, 8);
  for (auto& p : net->parameters()) p.mul_(1.1);
  const auto refolded = net->forward(x);
  net->unfuse();
  const auto unfused = net->forward(x);
  expect_close(unfused, refolded, 1e-4);
  EXPECT_GT((before.back() - unfused.back()).abs().max().item<double>(), 1e-2);
}

TEST(FuseForInference, PackedFcosGivesTheUnfusedDetections) {
  // BatchNorm folded, every convolution (backbone, FPN, head) prepacked on oneDNN with ReLU /
  // residual fused and Winograd where it applies: the detections of the plain model
  torch::manual_seed(6);
  auto model = DetectorRegistry().build(Config::parse(
      "{type: FCOS, num_classes: 3,"
      " backbone: {type: ResNet, depth: 18, base_channels: 32, norm: BN},"
      " neck: {type: FPN, out_channels: 64, num_outs: 5, extra_input: p5},"
      " head: {type: FCOSHead, num_convs: 2, channels: 64, gn_groups: 8}}",
      "fcos.yaml"));
  randomise_norms(*model, 7);
  model->eval();
  torch::NoGradGuard no_grad;
  Batch batch;
  batch.images = torch::randn({1, 3, 256, 320});
  batch.boxes = {torch::zeros({0, 4})};
  batch.labels = {torch::zeros({0}, torch::kLong)};
  ImageMeta meta;
  meta.original_hw = meta.input_hw = meta.padded_hw = {256, 320};
  batch.metas = {meta};
  const std::vector<at::Tensor> plain = model->forward_network(batch.images);
  const Detections plain_dets = model->predict(batch).at(0);
  EXPECT_GT(fuse_for_inference(*model), 0);
  int64_t packed = 0;
  for (const auto& m : model->modules()) {
    if (const auto* c = m->as<PackedConv2d>()) packed += c->fused();
  }
  EXPECT_EQ(packed, 2 * 2 + 3 + 3 * 2 + 2);  // towers, head outputs, FPN inner + layer, P6 P7
  expect_close(model->forward_network(batch.images), plain, 1e-4);
  const Detections dets = model->predict(batch).at(0);
  ASSERT_EQ(dets.scores.size(0), plain_dets.scores.size(0));
  EXPECT_TRUE(at::equal(dets.labels, plain_dets.labels));
  EXPECT_LE((dets.scores - plain_dets.scores).abs().max().item<double>(), 1e-4);
  EXPECT_LE((dets.boxes - plain_dets.boxes).abs().max().item<double>(), 1e-2);
}

TEST(FusedConvNorm, FoldsConvBiasAndStride) {
  torch::manual_seed(9);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(5, 7, 3).stride(2).padding(1).bias(true));
  FrozenBatchNorm2d bn(7);
  randomise_norms(*bn, 10);
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({2, 5, 11, 13});
  const auto [scale, shift] = bn->scale_shift();
  const FusedConvNorm fused(*conv, scale, shift, {});
  const at::Tensor ref = bn(conv(x));
  EXPECT_TRUE(torch::allclose(fused(x), ref, 1e-5, 1e-5));
  EXPECT_FALSE(fused.stale());
  conv->bias.add_(1.0);
  EXPECT_TRUE(fused.stale());
}

TEST(FusedConvNorm, RejectsMismatchedScale) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 1));
  try {
    (void)FusedConvNorm(*conv, torch::ones({5}), torch::zeros({5}), {});
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be [4]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace setdet
