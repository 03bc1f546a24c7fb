// torch.ops.setdet.ms_deform_attn / _ms_deform_attn_backward called through the c10 dispatcher,
// and the composite implementation (grid_sample per level) that is the op on non-CPU devices and
// the reference in tests. The caller must have libsetdet_ops loaded, which registers the ops and
// defines ms_deform_attn_composite. Schemas and semantics: src/setdet/ops/registration.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>

namespace setdet::ops {

inline at::Tensor call_ms_deform_attn(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("setdet::ms_deform_attn", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&)>();
  return op.call(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
}

// -> (grad_value, grad_sampling_locations, grad_attention_weights).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> call_ms_deform_attn_backward(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("setdet::_ms_deform_attn_backward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(grad_output, value, spatial_shapes, level_start_index, sampling_locations,
                 attention_weights);
}

// Deformable-DETR's ms_deform_attn_core_pytorch in LibTorch: one grid_sample (bilinear, zeros
// padding, align_corners false) per level at 2 * sampling_locations - 1, weighted and summed.
// Same arguments, checks and result as the op; differentiable through LibTorch's autograd.
at::Tensor ms_deform_attn_composite(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                    const at::Tensor& level_start_index,
                                    const at::Tensor& sampling_locations,
                                    const at::Tensor& attention_weights);

}  // namespace setdet::ops
