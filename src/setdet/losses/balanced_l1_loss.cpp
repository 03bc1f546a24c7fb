#include "setdet/losses/balanced_l1_loss.h"

#include <cmath>

#include "setdet/losses/smooth_l1_loss.h"

namespace setdet {

BalancedL1Loss::BalancedL1Loss(double alpha, double gamma, double beta, double loss_weight)
    : Loss(loss_weight), alpha_(alpha), gamma_(gamma), beta_(beta) {
  TORCH_CHECK(alpha > 0, "BalancedL1Loss: alpha must be > 0, got ", alpha);
  TORCH_CHECK(gamma > 0, "BalancedL1Loss: gamma must be > 0, got ", gamma);
  TORCH_CHECK(beta > 0, "BalancedL1Loss: beta must be > 0, got ", beta);
}

at::Tensor BalancedL1Loss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  check_same_shape(pred, target, "BalancedL1Loss");
  const at::Tensor d = (pred - target).abs();
  const double b = std::exp(gamma_ / alpha_) - 1.0;
  const at::Tensor inner = alpha_ / b * (b * d + 1) * (b * d / beta_ + 1).log() - alpha_ * d;
  const at::Tensor outer = gamma_ * d + gamma_ / b - alpha_ * beta_;
  return at::where(d < beta_, inner, outer);
}

SETDET_REGISTER(LossRegistry, "BalancedL1Loss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "alpha", "gamma", "beta", "loss_weight"});
  const auto alpha = cfg.get<double>("alpha", 0.5);
  const auto gamma = cfg.get<double>("gamma", 1.5);
  const auto beta = cfg.get<double>("beta", 1.0);
  SETDET_CHECK(alpha > 0, cfg.where(), ".alpha: expected > 0, got ", alpha);
  SETDET_CHECK(gamma > 0, cfg.where(), ".gamma: expected > 0, got ", gamma);
  SETDET_CHECK(beta > 0, cfg.where(), ".beta: expected > 0, got ", beta);
  return std::make_shared<BalancedL1Loss>(alpha, gamma, beta, read_loss_weight(cfg));
});

}  // namespace setdet
