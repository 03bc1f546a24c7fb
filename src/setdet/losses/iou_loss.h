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

// Row-aligned IoU as MMDetection's bbox_overlaps(is_aligned=True): intersection / max(union,
// eps): [N, 4], [N, 4] -> [N].
at::Tensor aligned_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2, double eps = 1e-6);

// MMDetection's IoULoss modes (mmdet >= 2.10 / 3.x iou_loss) on u = max(aligned IoU, eps):
// linear 1 - u, square 1 - u^2, log -log(u) (UnitBox, the original FCOS IoU loss).
enum class IoULossMode { kLinear, kSquare, kLog };

// Row-aligned IoU loss: [N, 4], [N, 4] -> [N]. Differentiable w.r.t. both.
at::Tensor iou_loss(const at::Tensor& boxes1, const at::Tensor& boxes2,
                    IoULossMode mode = IoULossMode::kLog, double eps = 1e-6);

// Bounded IoU loss (Tychsen-Smith & Petersson 2018, Eq. 7-9) as MMDetection's bounded_iou_loss:
// from xyxy boxes, centre offsets d and sizes of pred vs target (w_t, h_t; target detached):
//   x: 1 - max((w_t - 2|dx|) / (w_t + 2|dx| + eps), 0)      (y likewise with h_t)
//   w: 1 - min(w_t / (w + eps), w / (w_t + eps))            (h likewise)
// each cost c then smooth-L1'd: 0.5 c^2 / beta if c < beta, else c - 0.5 beta.
// [N, 4], [N, 4] -> [N, 4] (x, y, w, h terms). Differentiable w.r.t. pred.
at::Tensor bounded_iou_loss(const at::Tensor& pred, const at::Tensor& target, double beta = 0.2,
                            double eps = 1e-3);

// Registered as "GIoULoss"; keys: type, loss_weight.
class GIoULoss : public Loss {
 public:
  using Loss::Loss;
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
};

// Registered as "IoULoss"; keys: type, mode (linear | square | log, default log), linear (true:
// mode linear, MMDetection 2.x's deprecated flag), eps (1e-6), loss_weight.
class IoULoss : public Loss {
 public:
  explicit IoULoss(IoULossMode mode = IoULossMode::kLog, double eps = 1e-6,
                   double loss_weight = 1.0);
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
  IoULossMode mode() const { return mode_; }

 private:
  IoULossMode mode_;
  double eps_;
};

// On decoded boxes, per element [N, 4]. Registered as "BoundedIoULoss"; keys: type, beta (0.2),
// eps (1e-3), loss_weight.
class BoundedIoULoss : public Loss {
 public:
  explicit BoundedIoULoss(double beta = 0.2, double eps = 1e-3, double loss_weight = 1.0);
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;

 private:
  double beta_, eps_;
};

}  // namespace setdet
