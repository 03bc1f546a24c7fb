#include "setdet/losses/focal_loss.h"

namespace setdet {

at::Tensor sigmoid_focal_loss(const at::Tensor& logits, const at::Tensor& targets, double alpha,
                              double gamma) {
  TORCH_CHECK(logits.sizes() == targets.sizes(), "sigmoid_focal_loss: logits ", logits.sizes(),
              " and targets ", targets.sizes(), " must have the same shape");
  TORCH_CHECK(gamma >= 0, "sigmoid_focal_loss: gamma must be >= 0, got ", gamma);
  const at::Tensor p = logits.sigmoid();
  const at::Tensor ce =
      at::binary_cross_entropy_with_logits(logits, targets, {}, {}, at::Reduction::None);
  // 1 - p_t = p + t - 2 p t
  const at::Tensor one_minus_pt = p + targets - 2 * p * targets;
  at::Tensor loss = gamma == 2.0 ? ce * one_minus_pt.square() : ce * one_minus_pt.pow(gamma);
  if (alpha >= 0) loss = loss * ((2 * alpha - 1) * targets + (1 - alpha));
  return loss;
}

at::Tensor FocalLoss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  return sigmoid_focal_loss(pred, target, alpha_, gamma_);
}

SETDET_REGISTER(LossRegistry, "FocalLoss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "alpha", "gamma", "loss_weight"});
  const auto gamma = cfg.get<double>("gamma", 2.0);
  SETDET_CHECK(gamma >= 0, cfg.where(), ".gamma: expected >= 0, got ", gamma);
  const auto alpha = cfg.get<double>("alpha", 0.25);
  SETDET_CHECK(alpha <= 1, cfg.where(),
               ".alpha: expected a value in [0, 1] (or negative: no weighting), got ", alpha);
  return std::make_shared<FocalLoss>(alpha, gamma, read_loss_weight(cfg));
});

}  // namespace setdet
