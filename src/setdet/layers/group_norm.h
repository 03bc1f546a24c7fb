// GroupNorm (Wu & He 2018) as torch::nn::GroupNorm (same options, parameter names weight / bias,
// same result), with an optional fused ReLU and a CPU inference kernel for float32 NCHW and
// channels-last (NHWC) tensors: LibTorch 1.13's CPU group_norm on NHWC input is several times
// slower than on NCHW. The kernel runs when no gradient is needed; otherwise forward is
// at::group_norm (+ relu), so training is unchanged.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace setdet {

struct GroupNormOptions {
  GroupNormOptions(int64_t num_groups, int64_t num_channels)
      : num_groups_(num_groups), num_channels_(num_channels) {}
  TORCH_ARG(int64_t, num_groups);
  TORCH_ARG(int64_t, num_channels);
  TORCH_ARG(double, eps) = 1e-5;
  TORCH_ARG(bool, affine) = true;
  TORCH_ARG(bool, relu) = false;  // y = max(group_norm(x), 0) in the same pass
};

// x: [N, C, *] float32 on CPU, contiguous or channels-last (4-D); weight, bias: [C] or undefined.
// Same as at::group_norm(x, groups, weight, bias, eps) (then relu when `relu`), statistics in
// double; the output has x's memory format. No autograd.
at::Tensor group_norm_inference(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                const at::Tensor& bias, double eps, bool relu);

// Whether group_norm_inference handles x (dtype, device, layout).
bool group_norm_inference_supports(const at::Tensor& x);

class GroupNormImpl : public torch::nn::Cloneable<GroupNormImpl> {
 public:
  explicit GroupNormImpl(const GroupNormOptions& options);
  GroupNormImpl(int64_t num_groups, int64_t num_channels)
      : GroupNormImpl(GroupNormOptions(num_groups, num_channels)) {}

  void reset() override;
  void reset_parameters();
  at::Tensor forward(const at::Tensor& x);

  GroupNormOptions options;
  at::Tensor weight, bias;
};
TORCH_MODULE(GroupNorm);

}  // namespace setdet
