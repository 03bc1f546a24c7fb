// A torch::nn::Conv2d that runs on OneDnnConv2d (prepacked weights, Winograd where it pays) once
// fuse_for_inference() has been called and while the module is in eval mode, its weights are
// unchanged and the input qualifies (CPU float32 / bfloat16, no gradient recording); otherwise
// it is torch::nn::Conv2d. Same parameters, state_dict names and options as torch::nn::Conv2d,
// so `as<torch::nn::Conv2d>()` still finds it.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "setdet/layers/fused_conv_norm.h"
#include "setdet/layers/onednn_conv.h"

namespace setdet {

class PackedConv2dImpl : public torch::nn::Conv2dImpl, public InferenceFusable {
 public:
  explicit PackedConv2dImpl(const torch::nn::Conv2dOptions& options)
      : torch::nn::Conv2dImpl(options) {}

  at::Tensor forward(const at::Tensor& x);
  // relu(conv(x)) in one pass on the packed path (otherwise conv, then relu_).
  at::Tensor forward_relu(const at::Tensor& x);

  void fuse_for_inference() override;
  void unfuse() override;
  bool fused() const { return packed_.defined(); }

 private:
  bool packed_usable(const at::Tensor& x) const;

  OneDnnConv2d packed_;
  std::vector<int64_t> versions_;  // weight's and bias's at fusion
};

TORCH_MODULE(PackedConv2d);

}  // namespace setdet
