// The multi-scale deformable attention module of Deformable DETR (Zhu et al. 2021, Eq. (3)), as
// the authors' MSDeformAttn: value / sampling-offset / attention-weight / output projections
// around setdet::ms_deform_attn. Parameter names sampling_offsets, attention_weights,
// value_proj, output_proj (the authors').
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>

namespace setdet {

struct MSDeformAttnOptions {
  TORCH_ARG(int64_t, d_model) = 256;
  TORCH_ARG(int64_t, n_levels) = 4;
  TORCH_ARG(int64_t, n_heads) = 8;
  TORCH_ARG(int64_t, n_points) = 4;
};

class MSDeformAttnImpl : public torch::nn::Module {
 public:
  explicit MSDeformAttnImpl(const MSDeformAttnOptions& options);

  // The authors' initialisation: sampling-offset weights 0 and biases on a ring of n_heads
  // directions scaled 1 .. n_points; attention weights 0; value / output projections Xavier
  // uniform with zero bias.
  void reset_parameters();

  // query [N, Lq, C]; reference_points [N, Lq, L, 2] (x, y in [0, 1] of each level's map) or
  // [N, Lq, L, 4] (boxes cx, cy, w, h: offsets are scaled by w / n_points / 2, h / n_points / 2);
  // input [N, S, C]; spatial_shapes [L, 2] int64; level_start_index [L] int64; padding_mask
  // [N, S] bool (true: padding, its value is zeroed) or undefined -> [N, Lq, C].
  at::Tensor forward(const at::Tensor& query, const at::Tensor& reference_points,
                     const at::Tensor& input, const at::Tensor& spatial_shapes,
                     const at::Tensor& level_start_index, const at::Tensor& padding_mask = {});

  const MSDeformAttnOptions& options() const { return options_; }

 private:
  MSDeformAttnOptions options_;
  torch::nn::Linear sampling_offsets_{nullptr}, attention_weights_{nullptr}, value_proj_{nullptr},
      output_proj_{nullptr};
};
TORCH_MODULE(MSDeformAttn);

}  // namespace setdet
