#include "setdet/losses/loss.h"

namespace setdet {

at::Tensor Loss::operator()(const at::Tensor& pred, const at::Tensor& target,
                            const at::Tensor& weight, double avg_factor) const {
  TORCH_CHECK(avg_factor > 0, "loss: avg_factor must be positive, got ", avg_factor);
  at::Tensor loss = elementwise(pred, target);
  if (!weight.defined()) return loss.sum() * (loss_weight_ / avg_factor);
  at::Tensor w = weight;
  if (w.dim() + 1 == loss.dim() && w.sizes() == loss.sizes().slice(0, w.dim())) w = w.unsqueeze(-1);
  bool fits = w.dim() == loss.dim();
  for (int64_t d = 0; fits && d < w.dim(); ++d) fits = w.size(d) == loss.size(d) || w.size(d) == 1;
  TORCH_CHECK(fits, "loss: weight of shape ", weight.sizes(),
              " does not fit the element-wise loss of shape ", loss.sizes(),
              " (expected that shape, sizes of 1, or one weight per row)");
  loss = loss * w;
  return loss.sum() * (loss_weight_ / avg_factor);
}

at::Tensor BCEWithLogitsLoss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  TORCH_CHECK(pred.sizes() == target.sizes(), "BCEWithLogitsLoss: pred ", pred.sizes(),
              " and target ", target.sizes(), " must have the same shape");
  return at::binary_cross_entropy_with_logits(pred, target, {}, {}, at::Reduction::None);
}

double read_loss_weight(const Config& cfg) {
  const double w = cfg.get<double>("loss_weight", 1.0);
  SETDET_CHECK(w >= 0, cfg.where(), ".loss_weight: expected >= 0, got ", w);
  return w;
}

SETDET_REGISTER(LossRegistry, "BCEWithLogitsLoss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "loss_weight"});
  return std::make_shared<BCEWithLogitsLoss>(read_loss_weight(cfg));
});

}  // namespace setdet
