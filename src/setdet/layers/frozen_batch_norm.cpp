#include "setdet/layers/frozen_batch_norm.h"

namespace setdet {

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(const FrozenBatchNorm2dOptions& options_)
    : options(options_) {
  reset();
}

void FrozenBatchNorm2dImpl::reset() {
  TORCH_CHECK(options.num_features() > 0, "FrozenBatchNorm2d: num_features must be positive, got ",
              options.num_features());
  const int64_t c = options.num_features();
  weight = register_buffer("weight", torch::ones({c}));
  bias = register_buffer("bias", torch::zeros({c}));
  running_mean = register_buffer("running_mean", torch::zeros({c}));
  running_var = register_buffer("running_var", torch::ones({c}));
}

at::Tensor FrozenBatchNorm2dImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.num_features(),
              "FrozenBatchNorm2d: expected input [N, ", options.num_features(), ", H, W], got ",
              x.sizes());
  const auto [scale, shift] = scale_shift();
  return at::addcmul(shift.view({1, -1, 1, 1}), x, scale.view({1, -1, 1, 1}));
}

std::pair<at::Tensor, at::Tensor> FrozenBatchNorm2dImpl::scale_shift() const {
  at::Tensor scale = weight * (running_var + options.eps()).rsqrt();
  at::Tensor shift = bias - running_mean * scale;
  return {std::move(scale), std::move(shift)};
}

}  // namespace setdet
