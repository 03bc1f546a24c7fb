#include "setdet/layers/ms_deform_attn_module.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>

#include "setdet/layers/ms_deform_attn.h"
#include "setdet/layers/onednn_matmul.h"

namespace setdet {

MSDeformAttnImpl::MSDeformAttnImpl(const MSDeformAttnOptions& options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.d_model() > 0 && o.n_levels() > 0 && o.n_heads() > 0 && o.n_points() > 0,
              "MSDeformAttn: d_model, n_levels, n_heads and n_points must be positive");
  TORCH_CHECK(o.d_model() % o.n_heads() == 0, "MSDeformAttn: d_model (", o.d_model(),
              ") must be divisible by n_heads (", o.n_heads(), ")");
  const int64_t hlp = o.n_heads() * o.n_levels() * o.n_points();
  sampling_offsets_ = register_module("sampling_offsets", torch::nn::Linear(o.d_model(), hlp * 2));
  attention_weights_ = register_module("attention_weights", torch::nn::Linear(o.d_model(), hlp));
  value_proj_ = register_module("value_proj", torch::nn::Linear(o.d_model(), o.d_model()));
  output_proj_ = register_module("output_proj", torch::nn::Linear(o.d_model(), o.d_model()));
  reset_parameters();
}

void MSDeformAttnImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const auto& o = options_;
  const int64_t m = o.n_heads(), l = o.n_levels(), p = o.n_points();
  torch::nn::init::zeros_(sampling_offsets_->weight);
  const at::Tensor thetas = at::arange(m, at::kFloat) * static_cast<float>(2.0 * M_PI / m);
  at::Tensor grid = at::stack({thetas.cos(), thetas.sin()}, -1);  // [M, 2]
  grid = grid / std::get<0>(grid.abs().max(-1, /*keepdim=*/true));
  grid = grid.view({m, 1, 1, 2}).repeat({1, l, p, 1});
  grid = grid * at::arange(1, p + 1, at::kFloat).view({1, 1, p, 1});
  sampling_offsets_->bias.copy_(grid.reshape(-1));
  torch::nn::init::zeros_(attention_weights_->weight);
  torch::nn::init::zeros_(attention_weights_->bias);
  torch::nn::init::xavier_uniform_(value_proj_->weight);
  torch::nn::init::zeros_(value_proj_->bias);
  torch::nn::init::xavier_uniform_(output_proj_->weight);
  torch::nn::init::zeros_(output_proj_->bias);
}

at::Tensor MSDeformAttnImpl::forward(const at::Tensor& query, const at::Tensor& reference_points,
                                     const at::Tensor& input, const at::Tensor& spatial_shapes,
                                     const at::Tensor& level_start_index,
                                     const at::Tensor& padding_mask) {
  const auto& o = options_;
  const int64_t m = o.n_heads(), l = o.n_levels(), p = o.n_points();
  TORCH_CHECK(query.dim() == 3 && input.dim() == 3 && query.size(0) == input.size(0) &&
                  query.size(2) == o.d_model() && input.size(2) == o.d_model(),
              "MSDeformAttn: query and input must be [N, Lq, ", o.d_model(), "] and [N, S, ",
              o.d_model(), "], got ", query.sizes(), " and ", input.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(0) == l,
              "MSDeformAttn: spatial_shapes must be [", l, ", 2], got ", spatial_shapes.sizes());
  const int64_t n = query.size(0), lq = query.size(1), s = input.size(1);
  TORCH_CHECK(reference_points.dim() == 4 && reference_points.size(0) == n &&
                  reference_points.size(1) == lq && reference_points.size(2) == l &&
                  (reference_points.size(3) == 2 || reference_points.size(3) == 4),
              "MSDeformAttn: reference_points must be [", n, ", ", lq, ", ", l, ", 2 or 4], got ",
              reference_points.sizes());

  at::Tensor value = linear(input, value_proj_);
  if (padding_mask.defined()) value = value.masked_fill(padding_mask.unsqueeze(-1), 0.0);
  value = value.view({n, s, m, o.d_model() / m});
  const at::Tensor offsets = linear(query, sampling_offsets_).view({n, lq, m, l, p, 2});
  const at::Tensor weights =
      at::softmax(linear(query, attention_weights_).view({n, lq, m, l * p}), -1)
          .view({n, lq, m, l, p});
  at::Tensor locations;
  if (reference_points.size(3) == 2) {
    // offsets in pixels of each level: divided by (W, H)
    const at::Tensor normalizer = spatial_shapes.flip({1}).to(offsets.scalar_type());
    locations =
        reference_points.unsqueeze(2).unsqueeze(4) + offsets / normalizer.view({1, 1, 1, l, 1, 2});
  } else {
    const at::Tensor ref = reference_points.unsqueeze(2).unsqueeze(4);  // [N, Lq, 1, L, 1, 4]
    locations =
        ref.narrow(-1, 0, 2) + offsets / static_cast<double>(p) * ref.narrow(-1, 2, 2) * 0.5;
  }
  const at::Tensor out =
      ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights);
  return linear(out, output_proj_);
}

}  // namespace setdet
