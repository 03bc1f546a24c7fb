// BatchNorm2d with fixed statistics and affine parameters, as torchvision.ops.FrozenBatchNorm2d:
// y = (x - running_mean) / sqrt(running_var + eps) * weight + bias. All four tensors are buffers
// (same state_dict names as torchvision, no num_batches_tracked).
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <utility>

namespace setdet {

struct FrozenBatchNorm2dOptions {
  explicit FrozenBatchNorm2dOptions(int64_t num_features) : num_features_(num_features) {}
  TORCH_ARG(int64_t, num_features);
  TORCH_ARG(double, eps) = 1e-5;
};

class FrozenBatchNorm2dImpl : public torch::nn::Cloneable<FrozenBatchNorm2dImpl> {
 public:
  explicit FrozenBatchNorm2dImpl(const FrozenBatchNorm2dOptions& options);
  explicit FrozenBatchNorm2dImpl(int64_t num_features)
      : FrozenBatchNorm2dImpl(FrozenBatchNorm2dOptions(num_features)) {}

  void reset() override;
  // x: [N, C, H, W]
  at::Tensor forward(const at::Tensor& x);
  // The per-channel affine map the layer applies, y = x * scale + shift, both [C].
  std::pair<at::Tensor, at::Tensor> scale_shift() const;

  FrozenBatchNorm2dOptions options;
  at::Tensor weight, bias, running_mean, running_var;
};
TORCH_MODULE(FrozenBatchNorm2d);

}  // namespace setdet
