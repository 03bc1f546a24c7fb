#include "setdet/losses/pss_loss.h"

namespace setdet {

at::Tensor focal_loss_from_log_prob(const at::Tensor& log_prob, const at::Tensor& targets,
                                    double alpha, double gamma) {
  TORCH_CHECK(log_prob.sizes() == targets.sizes(), "focal_loss_from_log_prob: log_prob ",
              log_prob.sizes(), " and targets ", targets.sizes(), " must have the same shape");
  TORCH_CHECK(gamma >= 0, "focal_loss_from_log_prob: gamma must be >= 0, got ", gamma);
  const at::Tensor lp = log_prob.clamp_max(-1e-12);
  const at::Tensor p = lp.exp();
  const at::Tensor log_1mp = (-at::expm1(lp)).log();
  const at::Tensor ce = -(targets * lp + (1 - targets) * log_1mp);
  const at::Tensor one_minus_pt = p + targets - 2 * p * targets;
  at::Tensor loss = gamma == 2.0 ? ce * one_minus_pt.square() : ce * one_minus_pt.pow(gamma);
  if (alpha >= 0) loss = loss * ((2 * alpha - 1) * targets + (1 - alpha));
  return loss;
}

}  // namespace setdet
