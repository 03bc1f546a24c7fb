// IoU-family box losses on xyxy boxes.
#pragma once

#include "setdet/losses/loss.h"

namespace setdet {

// Pairwise GIoU (Rezatofighi et al. 2019), as torchvision.ops.generalized_box_iou:
// [N, 4] x [M, 4] -> [N, M].
at::Tensor generalized_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2);

// Row-aligned 1 - GIoU, as torchvision.ops.generalized_box_iou_loss(reduction="none",
// eps=1e-7): [N, 4], [N, 4] -> [N]. Differentiable w.r.t. both.
at::Tensor giou_loss(const at::Tensor& boxes1, const at::Tensor& boxes2, double eps = 1e-7);

// Row-aligned -log(IoU) (the UnitBox / original FCOS IoU loss), IoU clamped to >= eps.
at::Tensor iou_log_loss(const at::Tensor& boxes1, const at::Tensor& boxes2, double eps = 1e-6);

// Registered as "GIoULoss"; keys: type, loss_weight.
class GIoULoss : public Loss {
 public:
  using Loss::Loss;
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
};

// Registered as "IoULoss"; keys: type, loss_weight.
class IoULoss : public Loss {
 public:
  using Loss::Loss;
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
};

}  // namespace setdet
