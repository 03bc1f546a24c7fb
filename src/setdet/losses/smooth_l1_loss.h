// Coordinate-wise regression losses (MMDetection's smooth_l1_loss.py, mmdet 2.x / 3.x), usually on
// box-coder deltas: per element, the shape of pred.
#pragma once

#include "setdet/losses/loss.h"

namespace setdet {

// |pred - target|, as torch.nn.functional.l1_loss(reduction="none"). Registered as "L1Loss";
// keys: type, loss_weight.
class L1Loss : public Loss {
 public:
  using Loss::Loss;
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
};

// d = |pred - target|: 0.5 d^2 / beta if d < beta, else d - 0.5 beta (beta = 0: d), as
// torch.nn.functional.smooth_l1_loss(beta, reduction="none"). Registered as "SmoothL1Loss";
// keys: type, beta (1.0, >= 0), loss_weight.
class SmoothL1Loss : public Loss {
 public:
  explicit SmoothL1Loss(double beta = 1.0, double loss_weight = 1.0);
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
  double beta() const { return beta_; }

 private:
  double beta_;
};

// Throws naming `loss` unless pred and target have the same shape.
void check_same_shape(const at::Tensor& pred, const at::Tensor& target, const char* loss);

}  // namespace setdet
