// The box head of DETR / Deformable-DETR ("MLP": num_layers linear layers, ReLU between them).
// Parameter names layers.0 .. layers.{num_layers - 1}, as the authors' MLP module.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <vector>

namespace setdet {

class MLPImpl : public torch::nn::Module {
 public:
  // in_dim -> hidden_dim (num_layers - 1 times) -> out_dim; num_layers >= 1.
  MLPImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim, int64_t num_layers);
  // [..., in_dim] -> [..., out_dim]
  at::Tensor forward(const at::Tensor& x);
  // The last linear layer (its weight and bias are zeroed by DETR's box-head init).
  torch::nn::Linear last() const { return linears_.back(); }

 private:
  std::vector<torch::nn::Linear> linears_;
};
TORCH_MODULE(MLP);

}  // namespace setdet
