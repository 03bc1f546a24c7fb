// The dense heads' 3x3 convolution (FCOS, RetinaNet, PSS): padding 1, weights N(0, 0.01), zero
// bias, as torchvision's and MMDetection's heads initialise their towers and output layers.
#pragma once

#include <torch/nn/init.h>
#include <torch/nn/modules/conv.h>

namespace setdet {

inline torch::nn::Conv2d head_conv3x3(int64_t in, int64_t out) {
  torch::nn::Conv2d c(torch::nn::Conv2dOptions(in, out, 3).padding(1));
  torch::nn::init::normal_(c->weight, 0.0, 0.01);
  torch::nn::init::zeros_(c->bias);
  return c;
}

}  // namespace setdet
