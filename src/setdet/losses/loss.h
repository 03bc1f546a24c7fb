// Loss extension point, in the MMDetection mould: a loss computes per-element terms, multiplies
// them by an optional weight, sums, divides by an average factor (usually the number of positive
// samples) and scales by loss_weight.
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "setdet/config/registry.h"

namespace setdet {

class Loss {
 public:
  explicit Loss(double loss_weight = 1.0) : loss_weight_(loss_weight) {}
  virtual ~Loss() = default;

  // Per-element loss: the shape of pred for per-logit and per-coordinate losses (focal, L1,
  // smooth L1, balanced L1, bounded IoU), [N] for the IoU losses on [N, 4] boxes.
  virtual at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const = 0;

  // loss_weight * sum(elementwise(pred, target) * weight) / avg_factor; weight undefined = 1.
  // weight has the loss's number of dimensions, each size equal or 1, or is one weight per row
  // ([N] for an [N, 4] loss).
  at::Tensor operator()(const at::Tensor& pred, const at::Tensor& target,
                        const at::Tensor& weight = {}, double avg_factor = 1.0) const;

  double loss_weight() const { return loss_weight_; }

 private:
  double loss_weight_;
};

// Builders read `loss_weight` (default 1) and their own keys; unknown keys are errors.
// cfg.loss_weight (default 1), a finite number >= 0; throws naming the key path otherwise.
double read_loss_weight(const Config& cfg);

SETDET_DEFINE_REGISTRY(LossRegistry, std::shared_ptr<Loss>, "loss")

// Binary cross-entropy on logits, as torch.nn.functional.binary_cross_entropy_with_logits
// (reduction "none"). Registered as "BCEWithLogitsLoss" (keys: type, loss_weight).
class BCEWithLogitsLoss : public Loss {
 public:
  using Loss::Loss;
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
};

}  // namespace setdet
