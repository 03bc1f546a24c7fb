// The (dx, dy, dw, dh) box parameterisation of R-CNN / RetinaNet, as torchvision's
// det_utils.BoxCoder (encode_single / decode_single) and MMDetection's DeltaXYWHBBoxCoder with
// zero means.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cmath>

namespace setdet {

class DeltaXYWHBoxCoder {
 public:
  // weights (wx, wy, ww, wh) divide the deltas on decode and multiply them on encode;
  // dw, dh are clamped to at most `clip` before exp() on decode.
  explicit DeltaXYWHBoxCoder(std::array<double, 4> weights = {1.0, 1.0, 1.0, 1.0},
                             double clip = std::log(1000.0 / 16.0));

  // anchors, boxes: [N, 4] xyxy -> [N, 4] deltas of `boxes` relative to `anchors`.
  at::Tensor encode(const at::Tensor& anchors, const at::Tensor& boxes) const;
  // deltas [N, 4], anchors [N, 4] xyxy -> [N, 4] xyxy. Differentiable w.r.t. deltas.
  at::Tensor decode(const at::Tensor& deltas, const at::Tensor& anchors) const;

  const std::array<double, 4>& weights() const { return weights_; }
  double clip() const { return clip_; }

 private:
  std::array<double, 4> weights_;
  double clip_;
};

}  // namespace setdet
