// Softmax cross-entropy over classes, as torch.nn.functional.cross_entropy (reduction "none"):
// the R-CNN box head's classification loss.
#pragma once

#include "setdet/losses/loss.h"

namespace setdet {

// pred [N, K] logits, target [N] int64 class indices in [0, K) -> [N]. Registered as
// "CrossEntropyLoss"; keys: type, loss_weight.
class CrossEntropyLoss : public Loss {
 public:
  using Loss::Loss;
  at::Tensor elementwise(const at::Tensor& pred, const at::Tensor& target) const override;
};

}  // namespace setdet
