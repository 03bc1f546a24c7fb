// RPN head (Ren et al. 2015) as torchvision.models.detection.rpn.RPNHead (0.14 names): a shared
// conv3x3 + ReLU ("conv.0.0"), then 1x1 convs to A objectness logits ("cls_logits") and A x 4
// deltas ("bbox_pred") per location; weights N(0, 0.01), zero biases.
#pragma once


#include <vector>

#include "setdet/layers/packed_conv2d.h"
#include "setdet/models/dense_heads/fcos_head.h"

namespace setdet {

// Outputs: "objectness" [B, A, H, W]; "bbox_deltas" [B, A * 4, H, W] (channel a * 4 + k).
class RPNHeadImpl : public DenseHead {
 public:
  RPNHeadImpl(int64_t in_channels, int64_t num_anchors, std::vector<int64_t> strides);
  DenseHeadOutputs forward(const std::vector<at::Tensor>& features) override;
  std::vector<int64_t> strides() const override { return strides_; }
  int64_t num_anchors() const { return num_anchors_; }

 private:
  int64_t in_channels_, num_anchors_;
  std::vector<int64_t> strides_;
  PackedConv2d conv_{nullptr}, cls_logits_{nullptr}, bbox_pred_{nullptr};
};

// Registered in DenseHeadRegistry as "RPNHead"; keys: type, num_anchors (default 3). The
// factory's num_classes is ignored (one objectness logit per anchor).

}  // namespace setdet
