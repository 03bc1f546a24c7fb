#include "setdet/models/transformers/position_encoding.h"

#include <ATen/ATen.h>

namespace setdet {

at::Tensor sine_embedding(const at::Tensor& x, int64_t num_feats, double temperature) {
  TORCH_CHECK(num_feats > 0 && num_feats % 2 == 0,
              "sine_embedding: num_feats must be positive and even, got ", num_feats);
  const at::Tensor xf = x.to(at::kFloat);
  // float32 as the reference: T ** (2 * (arange // 2) / num_feats)
  const at::Tensor i = at::arange(num_feats, xf.options());
  const at::Tensor dim_t =
      at::pow(temperature, 2.0 * i.div(2, "floor") / static_cast<double>(num_feats));
  const at::Tensor pos = xf.unsqueeze(-1) / dim_t;  // [..., K, F]
  // [..., K, F / 2, 2] -> [..., K * F]
  return at::stack({pos.slice(-1, 0, num_feats, 2).sin(), pos.slice(-1, 1, num_feats, 2).cos()}, -1)
      .flatten(-3);
}

at::Tensor sine_position_embedding(const at::Tensor& mask, int64_t num_feats, double temperature,
                                   double scale) {
  TORCH_CHECK(mask.dim() == 3 && mask.scalar_type() == at::kBool,
              "sine_position_embedding: mask must be [B, H, W] bool, got ", mask.sizes(), " ",
              mask.scalar_type());
  const at::Tensor not_mask = mask.logical_not();
  at::Tensor y = not_mask.cumsum(1, at::kFloat);
  at::Tensor x = not_mask.cumsum(2, at::kFloat);
  constexpr double kEps = 1e-6;
  y = (y - 0.5) / (y.slice(1, -1) + kEps) * scale;
  x = (x - 0.5) / (x.slice(2, -1) + kEps) * scale;
  const at::Tensor pos_y = sine_embedding(y.unsqueeze(-1), num_feats, temperature);  // [B, H, W, F]
  const at::Tensor pos_x = sine_embedding(x.unsqueeze(-1), num_feats, temperature);
  return at::cat({pos_y, pos_x}, 3).permute({0, 3, 1, 2});
}

at::Tensor proposal_position_embedding(const at::Tensor& unact, int64_t num_feats,
                                       double temperature) {
  TORCH_CHECK(unact.dim() == 3 && unact.size(2) == 4,
              "proposal_position_embedding: expected [B, Q, 4] proposals, got ", unact.sizes());
  constexpr double kTwoPi = 6.283185307179586;
  return sine_embedding(unact.to(at::kFloat).sigmoid() * kTwoPi, num_feats, temperature);
}

}  // namespace setdet
