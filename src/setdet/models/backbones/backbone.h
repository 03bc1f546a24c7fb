// Backbone extension point: an image batch in, a list of feature maps out (finest first), with
// their channels and strides known before any forward (as detectron2's ShapeSpec), so necks and
// heads are sized at construction.
#pragma once

#include <torch/nn/module.h>

#include <memory>
#include <vector>

#include "setdet/config/registry.h"

namespace setdet {

struct ShapeSpec {
  int64_t channels = 0;
  int64_t stride = 0;  // input pixels per feature-map cell
};

class Backbone : public torch::nn::Module {
 public:
  // images: [B, 3, H, W] -> one map per output_shape() entry, same order.
  virtual std::vector<at::Tensor> forward(const at::Tensor& images) = 0;
  virtual std::vector<ShapeSpec> output_shape() const = 0;
};

// Builders return a backbone ready to train (initialised, frozen stages already frozen).
SETDET_DEFINE_REGISTRY(BackboneRegistry, std::shared_ptr<Backbone>, "backbone")

}  // namespace setdet
