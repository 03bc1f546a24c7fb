// torch::nn::GroupNorm that normalises in its parameters' dtype: under autocast a convolution
// hands it a bfloat16 (or float16) tensor, which LibTorch 1.13's group_norm rejects next to
// float32 weight and bias ("expected scalar type BFloat16 but found Float"); this module casts
// the input to the parameters' dtype first, so statistics are computed in float32 as well. Without
// autocast it is torch::nn::GroupNorm (same options, parameter names and result).
#pragma once

#include <torch/nn/modules/normalization.h>

namespace setdet {

class Float32GroupNormImpl : public torch::nn::GroupNormImpl {
 public:
  using torch::nn::GroupNormImpl::GroupNormImpl;
  at::Tensor forward(const at::Tensor& input);
};
TORCH_MODULE(Float32GroupNorm);

}  // namespace setdet
