#include <gtest/gtest.h>
#include <torch/torch.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <thread>
#include <vector>

#include "setdet/engine/autocast.h"
#include "setdet/layers/onednn_conv.h"
#include "setdet/layers/packed_conv2d.h"
#include "testing.h"

namespace setdet {
namespace {

struct Case {
  int64_t in, out, k, stride, padding, dilation, groups, h, w;
  bool bias;
};

// float64 at::conv2d (+ residual, ReLU): the reference every float32 path is measured against
at::Tensor reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                     const Case& c, bool relu, const at::Tensor& residual) {
  at::Tensor y = at::conv2d(x.to(at::kDouble), weight.to(at::kDouble),
                            bias.defined() ? bias.to(at::kDouble) : at::Tensor(), c.stride,
                            c.padding, c.dilation, c.groups);
  if (residual.defined()) y += residual.to(at::kDouble);
  return relu ? y.relu() : y;
}

double max_error(const at::Tensor& a, const at::Tensor& ref) {
  return (a.to(at::kDouble) - ref).abs().max().item<double>();
}

bool winograd_possible() {
  return dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core;
}

struct WinogradSwitch {  // restores the process-wide default
  explicit WinogradSwitch(bool on) { set_onednn_winograd(on); }
  ~WinogradSwitch() { set_onednn_winograd(true); }
};

TEST(OneDnnConv2d, MatchesFloat64ConvolutionInEveryLayoutAndPostOp) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const std::vector<Case> cases = {
      {64, 64, 3, 1, 1, 1, 1, 40, 52, true},     // Winograd-sized 3x3
      {32, 48, 3, 1, 1, 1, 1, 9, 11, true},      // too few pixels for Winograd
      {16, 32, 1, 1, 0, 1, 1, 20, 24, false},    // 1x1, no bias
      {3, 16, 7, 2, 3, 1, 1, 33, 47, true},      // the ResNet stem
      {32, 32, 3, 2, 1, 1, 1, 25, 19, true},     // stride 2, odd size
      {24, 24, 3, 1, 2, 2, 1, 30, 30, true},     // dilation
      {32, 64, 3, 1, 1, 1, 2, 17, 21, true},     // groups
      {20, 36, 3, 1, 0, 1, 1, 10, 13, true},     // no padding, channels not multiples of 16
  };
  for (const Case& c : cases) {
    const at::Tensor weight = at::randn({c.out, c.in / c.groups, c.k, c.k}) * 0.1;
    const at::Tensor bias = c.bias ? at::randn({c.out}) : at::Tensor();
    const OneDnnConv2d conv(weight, bias, {c.stride}, {c.padding}, {c.dilation}, c.groups);
    for (bool nhwc : {false, true}) {
      at::Tensor x = at::randn({2, c.in, c.h, c.w});
      if (nhwc) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor plain = reference(x, weight, bias, c, false, {});
      const at::Tensor residual = at::randn_like(plain);
      for (bool winograd : {true, false}) {
        const WinogradSwitch sw(winograd);
        for (int post = 0; post < 3; ++post) {  // none, relu, residual + relu
          const bool relu = post > 0;
          const at::Tensor res = post == 2 ? residual : at::Tensor();
          const at::Tensor y = conv(x, relu, res);
          const at::Tensor ref = reference(x, weight, bias, c, relu, res);
          ASSERT_EQ(y.sizes(), ref.sizes());
          EXPECT_EQ(y.scalar_type(), at::kFloat);
          EXPECT_EQ(y.suggest_memory_format(), x.suggest_memory_format());
          // the direct kernel: within a few times at::conv2d's own float32 error on the same
          // input; Winograd's transforms add rounding: within 1e-5 of the largest output
          const bool wino = conv.implementation(x, relu, post == 2).find("wino") !=
                            std::string::npos;
          const double yardstick = max_error(
              at::conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups), plain);
          const double tolerance =
              wino ? 1e-5 * plain.abs().max().item<double>() : std::max(4 * yardstick, 1e-6);
          EXPECT_LE(max_error(y, ref), tolerance)
              << "case in=" << c.in << " k=" << c.k << " stride=" << c.stride << " groups="
              << c.groups << " nhwc=" << nhwc << " winograd=" << winograd << " post=" << post
              << " kernel " << conv.implementation(x, relu, post == 2);
        }
      }
    }
  }
}

TEST(OneDnnConv2d, WinogradRunsWhereItPaysAndOnlyWhenEnabled) {
  torch::NoGradGuard no_grad;
  const OneDnnConv2d conv(at::randn({256, 256, 3, 3}), at::randn({256}), {1}, {1}, {1}, 1);
  const at::Tensor big = at::empty({1, 256, 50, 76}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor small = at::empty({1, 256, 13, 19}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_EQ(conv.implementation(big).find("wino") != std::string::npos, winograd_possible())
      << conv.implementation(big);
  EXPECT_EQ(conv.implementation(small).find("wino"), std::string::npos)
      << conv.implementation(small);
  const WinogradSwitch off(false);
  EXPECT_EQ(conv.implementation(big).find("wino"), std::string::npos) << conv.implementation(big);
  // stride 2 never takes it
  const OneDnnConv2d strided(at::randn({256, 256, 3, 3}), {}, {2}, {1}, {1}, 1);
  set_onednn_winograd(true);
  EXPECT_EQ(strided.implementation(big).find("wino"), std::string::npos);
}

TEST(OneDnnConv2d, BFloat16UnderAutocastAndOnBFloat16Inputs) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const Case c{64, 64, 3, 1, 1, 1, 1, 30, 40, true};
  const at::Tensor weight = at::randn({64, 64, 3, 3}) * 0.05;
  const at::Tensor bias = at::randn({64});
  const OneDnnConv2d conv(weight, bias, {1}, {1}, {1}, 1);
  const at::Tensor x = at::randn({1, 64, 30, 40}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor ref = reference(x, weight, bias, c, true, {});
  const double scale = ref.abs().max().item<double>();
  ASSERT_TRUE(OneDnnConv2d::applicable(x.to(at::kBFloat16)) || !winograd_possible());
  if (!OneDnnConv2d::applicable(x.to(at::kBFloat16))) return;  // no bfloat16 kernels: nothing to run
  const at::Tensor from_bf16 = conv(x.to(at::kBFloat16), true);
  EXPECT_EQ(from_bf16.scalar_type(), at::kBFloat16);
  EXPECT_LE(max_error(from_bf16, ref), 0.03 * scale);  // bfloat16 keeps 8 bits of mantissa
  at::Tensor autocast;
  {
    const AutocastGuard guard(at::kBFloat16, c10::DeviceType::CPU);
    autocast = conv(x, true);
  }
  EXPECT_EQ(autocast.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(autocast, from_bf16));
}

TEST(OneDnnConv2d, ConcurrentCallsGiveTheSequentialResults) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(2);
  const at::Tensor weight = at::randn({32, 32, 3, 3}), bias = at::randn({32});
  std::vector<at::Tensor> inputs, expected;
  for (int i = 0; i < 8; ++i) {  // several shapes: plans are made while other calls run
    inputs.push_back(
        at::randn({1, 32, 20 + 3 * i, 30 - i}).contiguous(at::MemoryFormat::ChannelsLast));
  }
  const OneDnnConv2d sequential(weight, bias, {1}, {1}, {1}, 1);
  for (const auto& x : inputs) expected.push_back(sequential(x, true));
  const OneDnnConv2d concurrent(weight, bias, {1}, {1}, {1}, 1);  // no plans yet
  std::vector<std::vector<at::Tensor>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      torch::NoGradGuard ng;
      for (size_t j = 0; j < 2 * inputs.size(); ++j) {
        got[t].push_back(concurrent(inputs[(j + t) % inputs.size()], true));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    for (size_t j = 0; j < got[t].size(); ++j) {
      EXPECT_TRUE(at::equal(got[t][j], expected[(j + t) % inputs.size()]))
          << "thread " << t << " call " << j;
    }
  }
}

TEST(OneDnnConv2d, NotApplicableWhileRecordingGradientsOrOffTheCpuFloatPath) {
  const at::Tensor x = torch::randn({1, 4, 8, 8}, torch::requires_grad());
  EXPECT_FALSE(OneDnnConv2d::applicable(x));
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(OneDnnConv2d::applicable(x));
  }
  EXPECT_TRUE(OneDnnConv2d::applicable(x.detach()));
  EXPECT_FALSE(OneDnnConv2d::applicable(x.detach().to(at::kDouble)));
  EXPECT_FALSE(OneDnnConv2d::applicable(x.detach().flatten()));
  const OneDnnConv2d conv(at::randn({4, 4, 3, 3}), {}, {1}, {1}, {1}, 1);
  const std::string err = test_util::error_of([&] { conv(x.detach().view({1, 4, 64, 1}).narrow(
      1, 0, 2)); });
  EXPECT_NE(err.find("expected 4 input channels, got 2"), std::string::npos) << err;
}

TEST(PackedConv2d, InferenceMatchesConv2dAndFollowsWeightChanges) {
  torch::manual_seed(3);
  PackedConv2d packed(torch::nn::Conv2dOptions(64, 64, 3).padding(1));
  torch::nn::Conv2d plain(torch::nn::Conv2dOptions(64, 64, 3).padding(1));
  {
    torch::NoGradGuard no_grad;
    plain->weight.copy_(packed->weight);
    plain->bias.copy_(packed->bias);
  }
  ASSERT_NE(packed->as<torch::nn::Conv2d>(), nullptr);  // generic code still sees a Conv2d
  packed->eval();
  plain->eval();
  packed->fuse_for_inference();
  ASSERT_TRUE(packed->fused());
  torch::NoGradGuard no_grad;
  const at::Tensor x = at::randn({1, 64, 40, 50}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor ref = plain(x);
  const double scale = ref.abs().max().item<double>();
  EXPECT_LE((packed(x) - ref).abs().max().item<double>(), 1e-5 * scale);
  EXPECT_LE((packed->forward_relu(x) - ref.relu()).abs().max().item<double>(), 1e-5 * scale);
  // in-place weight change (load_state_dict, an optimiser step): the new weights are used
  packed->weight.mul_(2);
  plain->weight.mul_(2);
  const at::Tensor ref2 = plain(x);
  EXPECT_LE((packed(x) - ref2).abs().max().item<double>(), 1e-5 * ref2.abs().max().item<double>());
}

TEST(PackedConv2d, GradientsFlowInTrainingModeAndInEvalModeUnderGradMode) {
  torch::manual_seed(4);
  PackedConv2d packed(torch::nn::Conv2dOptions(8, 8, 3).padding(1));
  packed->eval();
  packed->fuse_for_inference();
  const at::Tensor x = at::randn({1, 8, 12, 12});
  for (bool training : {true, false}) {  // eval + GradMode: e.g. a saliency map of the weights
    packed->train(training);
    packed->zero_grad();
    packed(x).sum().backward();
    ASSERT_TRUE(packed->weight.grad().defined()) << "training " << training;
    EXPECT_GT(packed->weight.grad().abs().sum().item<double>(), 0) << "training " << training;
  }
}

}  // namespace
}  // namespace setdet
