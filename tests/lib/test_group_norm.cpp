#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "setdet/layers/group_norm.h"

namespace setdet {
namespace {

at::Tensor reference(const at::Tensor& x, int64_t groups, const at::Tensor& w, const at::Tensor& b,
                     bool relu) {
  // at::group_norm in double: the exact value the float kernels approximate.
  at::Tensor y = at::group_norm(x.to(at::kDouble), groups, w.defined() ? w.to(at::kDouble) : w,
                                b.defined() ? b.to(at::kDouble) : b, 1e-5);
  return relu ? y.relu_() : y;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(GroupNormInference, MatchesAtenGroupNormOverSeedsShapesAndLayouts) {
  torch::NoGradGuard no_grad;
  struct Case {
    int64_t n, c, h, w, groups;
  };
  const std::vector<Case> cases{{1, 256, 25, 38, 32}, {2, 64, 7, 10, 32}, {1, 32, 1, 1, 32},
                                {3, 12, 5, 3, 4},     {1, 16, 9, 9, 1},   {1, 256, 100, 152, 32}};
  for (const auto& k : cases) {
    for (uint64_t seed = 0; seed < 3; ++seed) {
      torch::manual_seed(seed);
      const at::Tensor x = torch::randn({k.n, k.c, k.h, k.w}) * 3.0 + 1.0;
      const at::Tensor w = torch::rand({k.c}) + 0.5;
      const at::Tensor b = torch::randn({k.c});
      for (bool channels_last : {false, true}) {
        const at::Tensor xi =
            channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x.contiguous();
        for (bool relu : {false, true}) {
          for (bool affine : {false, true}) {
            const at::Tensor wi = affine ? w : at::Tensor();
            const at::Tensor bi = affine ? b : at::Tensor();
            const at::Tensor ours = group_norm_inference(xi, k.groups, wi, bi, 1e-5, relu);
            const at::Tensor aten = at::group_norm(xi, k.groups, wi, bi, 1e-5);
            const at::Tensor ref = reference(x, k.groups, wi, bi, relu);
            const std::string where = "shape " + std::to_string(k.c) + "x" + std::to_string(k.h) +
                                      "x" + std::to_string(k.w) + " seed " + std::to_string(seed) +
                                      " cl " + std::to_string(channels_last) + " relu " +
                                      std::to_string(relu) + " affine " + std::to_string(affine);
            if (k.h * k.w > 1) {
              EXPECT_EQ(ours.is_contiguous(at::MemoryFormat::ChannelsLast), channels_last) << where;
            }
            EXPECT_LE((ours.to(at::kDouble) - ref).abs().max().item<double>(), 2e-5) << where;
            // As close to ATen as ATen is to the exact value (ATen's x * a - mean * a loses
            // digits on groups of one element), plus float rounding.
            const at::Tensor aten_y = (relu ? aten.relu() : aten).to(at::kDouble);
            const double aten_err = (aten_y - ref).abs().max().item<double>();
            EXPECT_LE((ours.to(at::kDouble) - aten_y).abs().max().item<double>(), aten_err + 2e-5)
                << where;
            if (relu) {
              EXPECT_GE(ours.min().item<float>(), 0.0f) << where;
            }
          }
        }
      }
    }
  }
}

TEST(GroupNormInference, LargeMeanSmallSpreadStaysAccurate) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  // mean 300, std 0.01: E[x^2] - E[x]^2 must not cancel to garbage.
  const at::Tensor x = torch::randn({1, 64, 20, 30}) * 0.01 + 300.0;
  for (bool cl : {false, true}) {
    const at::Tensor xi = cl ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
    const at::Tensor ours = group_norm_inference(xi, 8, {}, {}, 1e-5, false);
    const at::Tensor ref = reference(x, 8, {}, {}, false);
    // Inputs are float: their rounding near 300 (3e-5) over std 0.01 bounds what is achievable.
    EXPECT_LE((ours.to(at::kDouble) - ref).abs().max().item<double>(), 1e-2) << "cl " << cl;
  }
}

TEST(GroupNormInference, SameResultForOneAndTwoThreads) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(12);
  const at::Tensor x =
      (torch::randn({1, 128, 37, 41}) * 2.0).contiguous(at::MemoryFormat::ChannelsLast);
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor one = group_norm_inference(x, 32, {}, {}, 1e-5, true);
  at::set_num_threads(2);
  const at::Tensor two = group_norm_inference(x, 32, {}, {}, 1e-5, true);
  at::set_num_threads(before);
  EXPECT_TRUE(torch::equal(one, two));
}

TEST(GroupNormInference, EmptyBatchAndBadInput) {
  torch::NoGradGuard no_grad;
  EXPECT_EQ(group_norm_inference(torch::zeros({0, 8, 4, 4}), 4, {}, {}, 1e-5, false).numel(), 0);
  EXPECT_NE(error_of([] {
              group_norm_inference(torch::zeros({1, 6, 2, 2}), 4, {}, {}, 1e-5, 0);
            }).find("divide the channels (6)"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              group_norm_inference(torch::zeros({1, 8, 2, 2}, at::kDouble), 4, {}, {}, 1e-5, 0);
            }).find("float32"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              group_norm_inference(torch::zeros({1, 8, 2, 2}), 4, torch::ones({7}), {}, 1e-5, 0);
            }).find("[8]"),
            std::string::npos);
  EXPECT_FALSE(group_norm_inference_supports(torch::zeros({1, 8, 4, 4}).transpose(2, 3)));
}

TEST(GroupNormModule, DropInForTorchGroupNormIncludingTraining) {
  torch::manual_seed(13);
  torch::nn::GroupNorm theirs(torch::nn::GroupNormOptions(8, 32));
  GroupNorm ours(GroupNormOptions(8, 32).relu(true));
  {
    torch::NoGradGuard no_grad;
    theirs->weight.uniform_(0.5, 1.5);
    theirs->bias.normal_();
  }
  // Same parameter names: a torch::nn::GroupNorm state loads by name.
  for (const auto& p : theirs->named_parameters()) {
    torch::NoGradGuard no_grad;
    ours->named_parameters()[p.key()].copy_(p.value());
  }
  EXPECT_EQ(ours->named_parameters().keys(), theirs->named_parameters().keys());
  const at::Tensor x = torch::randn({2, 32, 6, 5}).contiguous(at::MemoryFormat::ChannelsLast);
  {
    torch::NoGradGuard no_grad;  // the inference kernel
    EXPECT_TRUE(torch::allclose(ours(x), theirs(x).relu(), 1e-5, 1e-5));
  }
  // With gradients: at::group_norm, gradients equal torch's.
  const at::Tensor xg = x.clone().requires_grad_(true);
  ours(xg).sum().backward();
  const at::Tensor g_ours = xg.grad().clone();
  const at::Tensor w_ours = ours->weight.grad().clone();
  xg.mutable_grad().zero_();
  theirs(xg).relu().sum().backward();
  EXPECT_TRUE(torch::allclose(g_ours, xg.grad(), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(w_ours, theirs->weight.grad(), 1e-5, 1e-5));
  EXPECT_NE(error_of([] { GroupNorm(GroupNormOptions(5, 32)); }).find("divide num_channels (32)"),
            std::string::npos);
}

}  // namespace
}  // namespace setdet
