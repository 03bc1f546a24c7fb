#include "setdet/structures/box_coder.h"

namespace setdet {

DeltaXYWHBoxCoder::DeltaXYWHBoxCoder(std::array<double, 4> weights, double clip)
    : weights_(weights), clip_(clip) {
  for (const double w : weights_) {
    TORCH_CHECK(w > 0, "DeltaXYWHBoxCoder: weights must be positive, got ", w);
  }
}

at::Tensor DeltaXYWHBoxCoder::encode(const at::Tensor& anchors, const at::Tensor& boxes) const {
  TORCH_CHECK(anchors.dim() == 2 && anchors.size(1) == 4 && boxes.sizes() == anchors.sizes(),
              "DeltaXYWHBoxCoder::encode: anchors and boxes must both be [N, 4], got ",
              anchors.sizes(), " and ", boxes.sizes());
  // torchvision's encode_boxes, term by term.
  const auto a = anchors.unbind(1);
  const auto b = boxes.unbind(1);
  const at::Tensor aw = a[2] - a[0], ah = a[3] - a[1];
  const at::Tensor ax = a[0] + 0.5 * aw, ay = a[1] + 0.5 * ah;
  const at::Tensor bw = b[2] - b[0], bh = b[3] - b[1];
  const at::Tensor bx = b[0] + 0.5 * bw, by = b[1] + 0.5 * bh;
  return at::stack({weights_[0] * (bx - ax) / aw, weights_[1] * (by - ay) / ah,
                    weights_[2] * at::log(bw / aw), weights_[3] * at::log(bh / ah)},
                   1);
}

at::Tensor DeltaXYWHBoxCoder::decode(const at::Tensor& deltas, const at::Tensor& anchors) const {
  TORCH_CHECK(deltas.dim() == 2 && deltas.size(1) == 4 && anchors.dim() == 2 &&
                  anchors.size(1) == 4 && deltas.size(0) == anchors.size(0),
              "DeltaXYWHBoxCoder::decode: deltas and anchors must both be [N, 4], got ",
              deltas.sizes(), " and ", anchors.sizes());
  const auto a = anchors.to(deltas.scalar_type()).unbind(1);
  const auto d = deltas.unbind(1);
  const at::Tensor w = a[2] - a[0], h = a[3] - a[1];
  const at::Tensor cx = a[0] + 0.5 * w, cy = a[1] + 0.5 * h;
  const at::Tensor dx = d[0] / weights_[0], dy = d[1] / weights_[1];
  const at::Tensor dw = (d[2] / weights_[2]).clamp_max(clip_);
  const at::Tensor dh = (d[3] / weights_[3]).clamp_max(clip_);
  const at::Tensor px = dx * w + cx, py = dy * h + cy;
  const at::Tensor half_w = 0.5 * (dw.exp() * w), half_h = 0.5 * (dh.exp() * h);
  return at::stack({px - half_w, py - half_h, px + half_w, py + half_h}, 1);
}

}  // namespace setdet
