// setdet::ms_deform_attn (the C++ entry to torch.ops.setdet.ms_deform_attn) against
// setdet::ms_deform_attn_composite (grid_sample per level): forward and the three gradients on
// seeded cases, autograd through a small module chain, bfloat16 / autocast, argument errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "setdet/engine/autocast.h"
#include "setdet/layers/ms_deform_attn.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

struct Inputs {
  at::Tensor value, shapes, starts, loc, attn;
};

// Locations uniform in [-0.2, 1.2]: some neighbours (or whole points) off the map.
Inputs make_inputs(uint64_t seed, int64_t n, int64_t m, int64_t d,
                   const std::vector<std::vector<int64_t>>& sizes, int64_t lq, int64_t p,
                   at::ScalarType dtype) {
  torch::manual_seed(seed);
  std::vector<int64_t> flat;
  int64_t s = 0;
  for (const auto& hw : sizes) {
    flat.insert(flat.end(), hw.begin(), hw.end());
    s += hw[0] * hw[1];
  }
  const int64_t levels = static_cast<int64_t>(sizes.size());
  Inputs in;
  in.shapes = torch::tensor(flat, torch::kLong).view({levels, 2});
  in.starts = level_start_index(in.shapes);
  in.value = torch::randn({n, s, m, d}, torch::kDouble).to(dtype);
  in.loc = (torch::rand({n, lq, m, levels, p, 2}, torch::kDouble) * 1.4 - 0.2).to(dtype);
  in.attn = torch::rand({n, lq, m, levels, p}, torch::kDouble).to(dtype);
  return in;
}

using AttnFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, const at::Tensor&);

// {output, grad value, grad sampling_locations, grad attention_weights} of <fn(...), grad_out>.
std::vector<at::Tensor> output_and_grads(AttnFn fn, const Inputs& in, const at::Tensor& grad_out) {
  const at::Tensor value = in.value.detach().clone().requires_grad_();
  const at::Tensor loc = in.loc.detach().clone().requires_grad_();
  const at::Tensor attn = in.attn.detach().clone().requires_grad_();
  const at::Tensor out = fn(value, in.shapes, in.starts, loc, attn);
  auto grads = torch::autograd::grad({out}, {value, loc, attn}, {grad_out});
  return {out.detach(), grads[0], grads[1], grads[2]};
}

// max |a - b| <= tol * max(1, max |b|)
void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  ASSERT_EQ(a.scalar_type(), b.scalar_type()) << what;
  if (b.numel() == 0) return;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  EXPECT_LE((a - b).abs().max().item<double>(), tol * scale) << what;
}

// c10::Error's message is followed by a backtrace.
void expect_error_starts_with(const std::function<void()>& fn, const std::string& prefix) {
  const std::string message = error_of(fn);
  EXPECT_EQ(message.rfind(prefix, 0), 0u) << message;
}

TEST(MsDeformAttn, OpEqualsCompositeForwardAndBackward) {
  struct Case {
    int64_t n, m, d;
    std::vector<std::vector<int64_t>> sizes;
    int64_t lq, p;
  };
  const std::vector<Case> cases{{1, 1, 1, {{1, 1}}, 1, 1},
                                {2, 3, 5, {{3, 5}, {1, 1}, {7, 2}}, 7, 3},
                                {1, 8, 32, {{10, 15}, {5, 8}, {3, 4}, {2, 2}}, 20, 4},
                                {2, 2, 16, {{4, 4}, {2, 2}}, 9, 2},
                                {2, 2, 8, {{5, 6}, {2, 3}}, 6, 3},
                                {1, 4, 64, {{6, 9}, {3, 5}, {2, 3}, {1, 2}, {1, 1}}, 11, 4}};
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-10;
    for (size_t i = 0; i < cases.size(); ++i) {
      for (uint64_t seed = 0; seed < 3; ++seed) {
        const Case& c = cases[i];
        const Inputs in = make_inputs(100 * i + seed, c.n, c.m, c.d, c.sizes, c.lq, c.p, dtype);
        const at::Tensor grad_out = torch::randn({c.n, c.lq, c.m * c.d}, torch::kDouble).to(dtype);
        const auto ours = output_and_grads(&ms_deform_attn, in, grad_out);
        const auto ref = output_and_grads(&ms_deform_attn_composite, in, grad_out);
        const char* names[] = {"output", "grad_value", "grad_sampling_locations",
                               "grad_attention_weights"};
        for (size_t k = 0; k < 4; ++k) {
          expect_close(ours[k], ref[k], tol,
                       std::string(names[k]) + " " + c10::toString(dtype) + " case " +
                           std::to_string(i) + " seed " + std::to_string(seed));
        }
      }
    }
  }
}

TEST(MsDeformAttn, AutogradFlowsThroughProjectionsAsInTheModel) {
  // value / sampling offsets / attention weights from linear layers as in Deformable-DETR's
  // MSDeformAttn; gradients of every parameter equal the composite's.
  const Inputs in = make_inputs(3, 2, 4, 8, {{6, 5}, {3, 3}}, 6, 2, at::kDouble);
  const int64_t n = 2, s = in.value.size(1), m = 4, d = 8, lq = 6, levels = 2, p = 2;
  torch::manual_seed(11);
  torch::nn::Linear value_proj(m * d, m * d), offsets(m * d, m * levels * p * 2),
      weights(m * d, m * levels * p);
  value_proj->to(torch::kDouble);
  offsets->to(torch::kDouble);
  weights->to(torch::kDouble);
  const at::Tensor features = torch::randn({n, s, m * d}, torch::kDouble);
  const at::Tensor queries = torch::randn({n, lq, m * d}, torch::kDouble);
  const at::Tensor reference = torch::rand({n, lq, 1, levels, 1, 2}, torch::kDouble);
  std::vector<std::vector<at::Tensor>> grads;
  for (const AttnFn fn : {AttnFn(&ms_deform_attn), AttnFn(&ms_deform_attn_composite)}) {
    for (const at::Tensor& param : {value_proj->weight, offsets->weight, weights->weight}) {
      if (param.grad().defined()) param.grad().zero_();
    }
    const at::Tensor value = value_proj(features).view({n, s, m, d});
    const at::Tensor loc = reference + offsets(queries).view({n, lq, m, levels, p, 2}) * 0.1;
    const at::Tensor attn =
        weights(queries).view({n, lq, m, levels * p}).softmax(-1).view({n, lq, m, levels, p});
    fn(value, in.shapes, in.starts, loc, attn).square().sum().backward();
    grads.push_back({value_proj->weight.grad().clone(), offsets->weight.grad().clone(),
                     weights->weight.grad().clone()});
  }
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_GT(grads[0][k].abs().sum().item<double>(), 0.0) << k;
    expect_close(grads[0][k], grads[1][k], 1e-10, "parameter " + std::to_string(k));
  }
}

TEST(MsDeformAttn, Bfloat16AndAutocast) {
  const Inputs in = make_inputs(5, 1, 2, 16, {{5, 7}, {2, 3}}, 8, 3, at::kFloat);
  const at::Tensor value16 = in.value.to(at::kBFloat16);
  const at::Tensor out16 = ms_deform_attn(value16, in.shapes, in.starts, in.loc.to(at::kBFloat16),
                                          in.attn.to(at::kBFloat16));
  EXPECT_EQ(out16.scalar_type(), at::kBFloat16);
  const at::Tensor in_float = ms_deform_attn(value16.to(at::kFloat), in.shapes, in.starts,
                                             in.loc.to(at::kBFloat16).to(at::kFloat),
                                             in.attn.to(at::kBFloat16).to(at::kFloat));
  EXPECT_TRUE(out16.equal(in_float.to(at::kBFloat16)));
  // Under autocast a bfloat16 value meets float32 locations: computed in float32.
  at::Tensor out;
  {
    const AutocastGuard autocast(at::kBFloat16, c10::DeviceType::CPU);
    out = ms_deform_attn(value16, in.shapes, in.starts, in.loc, in.attn);
  }
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  EXPECT_TRUE(
      out.equal(ms_deform_attn(value16.to(at::kFloat), in.shapes, in.starts, in.loc, in.attn)));
}

TEST(MsDeformAttn, LevelStartIndexAndErrors) {
  const at::Tensor shapes = torch::tensor({3, 5, 1, 1, 7, 2}, torch::kLong).view({3, 2});
  EXPECT_TRUE(level_start_index(shapes).equal(torch::tensor({0, 15, 16}, torch::kLong)));
  expect_error_starts_with([&] { level_start_index(shapes.to(at::kInt)); },
                           "level_start_index: spatial_shapes must be int64, got int32");
  expect_error_starts_with(
      [&] { level_start_index(shapes.flatten()); },
      "level_start_index: spatial_shapes must be a 2-D tensor [L, 2] of (H, W) per level, got "
      "shape [6]");

  const Inputs in = make_inputs(0, 1, 2, 4, {{3, 5}, {1, 1}}, 3, 2, at::kFloat);
  const at::Tensor bad_starts = torch::tensor({0, 16}, torch::kLong);
  expect_error_starts_with(
      [&] { ms_deform_attn(in.value, in.shapes, bad_starts, in.loc, in.attn); },
      "setdet::ms_deform_attn: level_start_index must be the running sum of H * W over "
      "spatial_shapes, [0, 15], got [0, 16]");
  expect_error_starts_with(
      [&] {
        ms_deform_attn_composite(in.value, in.shapes, in.starts, in.loc.to(at::kDouble), in.attn);
      },
      "setdet::ms_deform_attn: sampling_locations must have the same dtype as value (float32), "
      "got float64");
}

}  // namespace
}  // namespace setdet
