// RetinaNet head (Lin et al. 2017, Sec. 4) as torchvision.models.detection.retinanet.RetinaNetHead
// (v2 parameter names): a classification and a regression tower of num_convs x (conv3x3 + ReLU),
// no normalisation, shared across levels, ending in cls_logits (A * C channels) and bbox_reg
// (A * 4 deltas). Names: classification_head.conv.N.0, classification_head.cls_logits,
// regression_head.conv.N.0, regression_head.bbox_reg.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>

#include "setdet/layers/packed_conv2d.h"
#include "setdet/models/dense_heads/fcos_head.h"

namespace setdet {

struct RetinaHeadOptions {
  RetinaHeadOptions(int64_t in_channels, int64_t num_classes, int64_t num_anchors,
                    std::vector<int64_t> strides)
      : in_channels_(in_channels),
        num_classes_(num_classes),
        num_anchors_(num_anchors),
        strides_(std::move(strides)),
        channels_(in_channels) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, num_anchors);           // per location
  TORCH_ARG(std::vector<int64_t>, strides);  // one per input level
  TORCH_ARG(int64_t, channels);              // tower width (default: in_channels)
  TORCH_ARG(int64_t, num_convs) = 4;
  TORCH_ARG(double, prior_prob) = 0.01;  // cls_logits bias = -log((1 - p) / p)
};

// Outputs: "cls_logits" [B, A * C, H, W] (channel a * C + c); "bbox_deltas" [B, A * 4, H, W]
// (channel a * 4 + k, k over dx, dy, dw, dh).
class RetinaHeadImpl : public DenseHead {
 public:
  explicit RetinaHeadImpl(const RetinaHeadOptions& options);
  DenseHeadOutputs forward(const std::vector<at::Tensor>& features) override;
  std::vector<int64_t> strides() const override { return options_.strides(); }
  const RetinaHeadOptions& options() const { return options_; }

 private:
  RetinaHeadOptions options_;
  // the blocks of classification_head.conv and regression_head.conv
  std::vector<torch::nn::Sequential> cls_tower_, reg_tower_;
  PackedConv2d cls_logits_{nullptr}, bbox_reg_{nullptr};
};
TORCH_MODULE(RetinaHead);

}  // namespace setdet
