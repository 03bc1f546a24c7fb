#include "setdet/losses/smooth_l1_loss.h"

namespace setdet {

void check_same_shape(const at::Tensor& pred, const at::Tensor& target, const char* loss) {
  TORCH_CHECK(pred.sizes() == target.sizes(), loss, ": pred ", pred.sizes(), " and target ",
              target.sizes(), " must have the same shape");
}

at::Tensor L1Loss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  check_same_shape(pred, target, "L1Loss");
  return (pred - target).abs();
}

SmoothL1Loss::SmoothL1Loss(double beta, double loss_weight) : Loss(loss_weight), beta_(beta) {
  TORCH_CHECK(beta >= 0, "SmoothL1Loss: beta must be >= 0, got ", beta);
}

at::Tensor SmoothL1Loss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  check_same_shape(pred, target, "SmoothL1Loss");
  return at::smooth_l1_loss(pred, target, at::Reduction::None, beta_);
}

SETDET_REGISTER(LossRegistry, "L1Loss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "loss_weight"});
  return std::make_shared<L1Loss>(read_loss_weight(cfg));
});

SETDET_REGISTER(LossRegistry, "SmoothL1Loss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "beta", "loss_weight"});
  const auto beta = cfg.get<double>("beta", 1.0);
  SETDET_CHECK(beta >= 0, cfg.where(), ".beta: expected >= 0, got ", beta);
  return std::make_shared<SmoothL1Loss>(beta, read_loss_weight(cfg));
});

}  // namespace setdet
