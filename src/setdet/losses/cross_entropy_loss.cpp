#include "setdet/losses/cross_entropy_loss.h"

namespace setdet {

at::Tensor CrossEntropyLoss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  TORCH_CHECK(pred.dim() == 2, "CrossEntropyLoss: pred must be [N, K], got ", pred.sizes());
  TORCH_CHECK(
      target.dim() == 1 && target.size(0) == pred.size(0) && target.scalar_type() == at::kLong,
      "CrossEntropyLoss: target must be int64 [", pred.size(0), "], got ", target.scalar_type(),
      " ", target.sizes());
  return -at::log_softmax(pred, 1).gather(1, target.unsqueeze(1)).squeeze(1);
}

SETDET_REGISTER(LossRegistry, "CrossEntropyLoss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "loss_weight"});
  return std::make_shared<CrossEntropyLoss>(read_loss_weight(cfg));
});

}  // namespace setdet
