// Sigmoid focal loss (Lin et al. 2017, Eq. (5) with alpha balancing), as
// torchvision.ops.sigmoid_focal_loss.
#pragma once

#include "setdet/losses/loss.h"

namespace setdet {

// logits, targets: same shape, targets in [0, 1]. Returns the per-element loss (reduction
// "none"): alpha_t * (1 - p_t)^gamma * BCE(logits, targets); alpha < 0 disables alpha_t.
at::Tensor sigmoid_focal_loss(const at::Tensor& logits, const at::Tensor& targets,
                              double alpha = 0.25, double gamma = 2.0);

// Registered as "FocalLoss"; keys: type, alpha (0.25), gamma (2.0), loss_weight (1.0).
class FocalLoss : public Loss {
 public:
  FocalLoss(double alpha, double gamma, double loss_weight)
      : Loss(loss_weight), alpha_(alpha), gamma_(gamma) {}
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
  double alpha() const { return alpha_; }
  double gamma() const { return gamma_; }

 private:
  double alpha_, gamma_;
};

}  // namespace setdet
