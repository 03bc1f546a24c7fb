// Box format conversions on tensors [..., 4] (DETR's util/box_ops).
#pragma once

#include <ATen/ATen.h>

namespace setdet {

// (cx, cy, w, h) -> (x1, y1, x2, y2) = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
inline at::Tensor box_cxcywh_to_xyxy(const at::Tensor& b) {
  const at::Tensor c = b.narrow(-1, 0, 2), half = 0.5 * b.narrow(-1, 2, 2);
  return at::cat({c - half, c + half}, -1);
}

// (x1, y1, x2, y2) -> ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
inline at::Tensor box_xyxy_to_cxcywh(const at::Tensor& b) {
  const at::Tensor p = b.narrow(-1, 0, 2), q = b.narrow(-1, 2, 2);
  return at::cat({(p + q) / 2, q - p}, -1);
}

}  // namespace setdet
