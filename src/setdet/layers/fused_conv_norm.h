// Inference-time folding of a per-channel affine norm (eval-mode BatchNorm2d, FrozenBatchNorm2d)
// into the convolution before it: conv(x, w) * s + t == conv(x, w * s[o]) + (b * s + t), with
// s = gamma / sqrt(running_var + eps), t = beta - running_mean * s. The folded tensors are plain
// members, never registered, so the module's parameters and state_dict are unchanged. Inputs that
// OneDnnConv2d takes run on it (prepacked weights, ReLU / residual fused); others on at::conv2d.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

#include <utility>
#include <vector>

#include "setdet/layers/onednn_conv.h"

namespace setdet {

class FusedConvNorm {
 public:
  FusedConvNorm() = default;
  // scale, shift: [out_channels]. Keeps references to conv's weight/bias and to `sources` (the
  // norm's tensors) to notice later in-place changes (load_state_dict, optimiser steps).
  FusedConvNorm(const torch::nn::Conv2dImpl& conv, const at::Tensor& scale, const at::Tensor& shift,
                std::vector<at::Tensor> sources);

  bool defined() const { return weight_.defined(); }
  // True when a source tensor changed in place since the fusion (its version counter moved).
  bool stale() const;
  // relu(conv(x) + residual), ReLU and residual optional. x: [N, C_in, H, W] in any memory
  // format; the output keeps x's format as at::conv2d does.
  at::Tensor operator()(const at::Tensor& x, bool relu = false,
                        const at::Tensor& residual = {}) const;

  const at::Tensor& weight() const { return weight_; }
  const at::Tensor& bias() const { return bias_; }

 private:
  at::Tensor weight_, bias_;
  std::vector<int64_t> stride_, padding_, dilation_;
  int64_t groups_ = 1;
  std::vector<at::Tensor> sources_;
  std::vector<int64_t> versions_;
  OneDnnConv2d onednn_;  // defined for CPU weights
};

// Modules that fold layers for inference. fuse_for_inference(root) calls fuse_for_inference() on
// every submodule of root (root included) that implements this; the module must be in eval mode
// (the folded form computes what eval-mode forward computes) and reverts to its unfused form when
// put back in training mode or when its weights change in place.
class InferenceFusable {
 public:
  virtual ~InferenceFusable() = default;
  virtual void fuse_for_inference() = 0;
  virtual void unfuse() = 0;
};

// Returns the number of modules fused.
int64_t fuse_for_inference(torch::nn::Module& root);

}  // namespace setdet
