// Balanced L1 loss (Pang et al. 2019, Libra R-CNN, Eq. 8-9), as MMDetection's balanced_l1_loss
// (mmdet 2.x / 3.x), which scales the inner point from 1 to beta: with d = |pred - target| and
// b = e^(gamma / alpha) - 1 (so that alpha ln(b + 1) = gamma),
//   d < beta:  alpha / b * (b d + 1) * ln(b d / beta + 1) - alpha d
//   else:      gamma d + gamma / b - alpha beta
// Per element, the shape of pred (box-coder deltas).
#pragma once

#include "setdet/losses/loss.h"

namespace setdet {

// Registered as "BalancedL1Loss"; keys: type, alpha (0.5), gamma (1.5), beta (1.0), loss_weight.
class BalancedL1Loss : public Loss {
 public:
  BalancedL1Loss(double alpha = 0.5, double gamma = 1.5, double beta = 1.0,
                 double loss_weight = 1.0);
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;

 private:
  double alpha_, gamma_, beta_;
};

}  // namespace setdet
