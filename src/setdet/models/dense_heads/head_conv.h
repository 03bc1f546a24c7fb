// The dense heads' 3x3 convolution (FCOS, RetinaNet, PSS): padding 1, weights N(0, 0.01), zero
// bias, as torchvision's and MMDetection's heads initialise their towers and output layers;
// packed for inference by fuse_for_inference (layers/packed_conv2d.h).
#pragma once

#include <torch/nn/init.h>
#include "setdet/layers/packed_conv2d.h"

namespace setdet {

inline PackedConv2d head_conv3x3(int64_t in, int64_t out) {
  PackedConv2d c(torch::nn::Conv2dOptions(in, out, 3).padding(1));
  torch::nn::init::normal_(c->weight, 0.0, 0.01);
  torch::nn::init::zeros_(c->bias);
  return c;
}

}  // namespace setdet
