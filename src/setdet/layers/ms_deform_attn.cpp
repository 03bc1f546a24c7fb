#include "setdet/layers/ms_deform_attn.h"

#include "setdet/ops/ms_deform_attn.h"
#include "setdet/ops/tensor_args.h"

namespace setdet {

at::Tensor ms_deform_attn(const at::Tensor& value, const at::Tensor& spatial_shapes,
                          const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                          const at::Tensor& attention_weights) {
  return ops::call_ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                                  attention_weights);
}

at::Tensor ms_deform_attn_composite(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                    const at::Tensor& level_start_index,
                                    const at::Tensor& sampling_locations,
                                    const at::Tensor& attention_weights) {
  return ops::ms_deform_attn_composite(value, spatial_shapes, level_start_index, sampling_locations,
                                       attention_weights);
}

at::Tensor level_start_index(const at::Tensor& spatial_shapes) {
  constexpr const char* kFn = "level_start_index";
  TORCH_CHECK(spatial_shapes.defined(), kFn, ": spatial_shapes must be a tensor, got None");
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2, kFn,
              ": spatial_shapes must be a 2-D tensor [L, 2] of (H, W) per level, got shape ",
              spatial_shapes.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong, kFn,
              ": spatial_shapes must be int64, got ",
              ops::dtype_name(spatial_shapes.scalar_type()));
  const at::Tensor areas = spatial_shapes.select(1, 0) * spatial_shapes.select(1, 1);
  return areas.cumsum(0) - areas;
}

}  // namespace setdet
