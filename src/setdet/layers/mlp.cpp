#include "setdet/layers/mlp.h"

#include <ATen/ATen.h>

#include "setdet/layers/onednn_matmul.h"

namespace setdet {

MLPImpl::MLPImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim, int64_t num_layers) {
  TORCH_CHECK(num_layers >= 1 && in_dim > 0 && hidden_dim > 0 && out_dim > 0,
              "MLP: dimensions and num_layers must be positive, got in ", in_dim, ", hidden ",
              hidden_dim, ", out ", out_dim, ", layers ", num_layers);
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    const int64_t in = i == 0 ? in_dim : hidden_dim;
    const int64_t out = i == num_layers - 1 ? out_dim : hidden_dim;
    linears_.emplace_back(in, out);
    list->push_back(linears_.back());
  }
}

at::Tensor MLPImpl::forward(const at::Tensor& x) {
  at::Tensor y = x;
  for (size_t i = 0; i < linears_.size(); ++i) {
    y = linear(y, linears_[i]);
    if (i + 1 < linears_.size()) y = at::relu(y);
  }
  return y;
}

}  // namespace setdet
