#include "setdet/layers/float32_group_norm.h"

namespace setdet {

at::Tensor Float32GroupNormImpl::forward(const at::Tensor& input) {
  const auto dtype = weight.defined() ? weight.scalar_type() : at::kFloat;
  return torch::nn::GroupNormImpl::forward(input.scalar_type() == dtype ? input
                                                                        : input.to(dtype));
}

}  // namespace setdet
