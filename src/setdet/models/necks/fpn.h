// Feature Pyramid Network (Lin et al. 2017) as torchvision.ops.FeaturePyramidNetwork with the
// RetinaNet/FCOS extra levels: lateral 1x1 convs (inner_blocks.i.0), nearest top-down upsampling,
// 3x3 output convs (layer_blocks.i.0), then P6 = conv3x3/2 and P7 = conv3x3/2(relu(P6))
// (extra_blocks.p6 / p7, torchvision's LastLevelP6P7) from the last output (extra_input "p5",
// torchvision) or from the last input ("c5", mmdet add_extra_convs="on_input"); or, with extra_type
// "maxpool", P6 = max_pool2d(P5, 1, stride 2) (torchvision's LastLevelMaxPool, the Faster R-CNN
// FPN; MMDetection's FPN without extra convs).
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>

#include <functional>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/layers/packed_conv2d.h"
#include "setdet/models/backbones/backbone.h"

namespace setdet {

class Neck : public torch::nn::Module {
 public:
  // Backbone maps (finest first) -> pyramid maps (finest first), shapes per output_shape().
  virtual std::vector<at::Tensor> forward(const std::vector<at::Tensor>& features) = 0;
  virtual std::vector<ShapeSpec> output_shape() const = 0;
};

// A neck is sized by the backbone it follows: builders return a factory taking the backbone's
// output shapes. Use: NeckRegistry().build(cfg)(backbone->output_shape()).
using NeckFactory = std::function<std::shared_ptr<Neck>(const std::vector<ShapeSpec>&)>;
SETDET_DEFINE_REGISTRY(NeckRegistry, NeckFactory, "neck")

struct FPNOptions {
  FPNOptions(std::vector<ShapeSpec> in_shapes, int64_t out_channels)
      : in_shapes_(std::move(in_shapes)), out_channels_(out_channels) {}
  TORCH_ARG(std::vector<ShapeSpec>, in_shapes);
  TORCH_ARG(int64_t, out_channels);
  // Total outputs: the len(in_shapes) pyramid levels plus (num_outs - len(in_shapes)) extra
  // stride-2 levels (0, 1 or 2).
  TORCH_ARG(int64_t, num_outs) = 5;
  TORCH_ARG(std::string, extra_input) = "p5";   // "p5" or "c5"
  TORCH_ARG(std::string, extra_type) = "conv";  // "conv" (P6P7 convs) or "maxpool" (one level)
};

class FPNImpl : public Neck {
 public:
  explicit FPNImpl(const FPNOptions& options);
  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& features) override;
  std::vector<ShapeSpec> output_shape() const override;

 private:
  FPNOptions options_;
  torch::nn::ModuleList inner_blocks_{nullptr}, layer_blocks_{nullptr};
  std::vector<PackedConv2d> inner_convs_, layer_convs_;
  PackedConv2d p6_{nullptr}, p7_{nullptr};
  bool max_pool_extra_ = false;
};
TORCH_MODULE(FPN);

}  // namespace setdet
