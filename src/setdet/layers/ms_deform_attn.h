// Multi-scale deformable attention (Zhu et al. 2021, Deformable DETR, Eq. (3)) for the models:
// the C++ entry to torch.ops.setdet.ms_deform_attn (src/setdet/ops/ms_deform_attn.cpp, Deformable-
// DETR's MultiScaleDeformableAttnFunction), called through the c10 dispatcher so that autograd
// records it. The `setdet` library links libsetdet_ops, which registers the op.
#pragma once

#include <ATen/ATen.h>

namespace setdet {

// value [N, S, M, D] (the L levels' maps flattened row-major and concatenated along S, M heads of
// D channels), spatial_shapes [L, 2] int64 (H, W per level), level_start_index [L] int64 (first
// position of each level in S), sampling_locations [N, Lq, M, L, P, 2] ((x, y) normalised to
// [0, 1] of each level's map), attention_weights [N, Lq, M, L, P] -> [N, Lq, M * D]: per query and
// head, sum over levels l and points p of attention_weights * bilinear(level l, location), with
// grid_sample's bilinear sampling (align_corners false, zeros outside the map). float32 / float64
// (bfloat16 / float16 computed in float32, float32 under CPU autocast); differentiable w.r.t.
// value, sampling_locations and attention_weights. CPU: setdet's kernels; other devices: the
// composite below. Bad arguments raise c10::Error naming the argument.
at::Tensor ms_deform_attn(const at::Tensor& value, const at::Tensor& spatial_shapes,
                          const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                          const at::Tensor& attention_weights);

// The same result from LibTorch ops, one grid_sample per level (Deformable-DETR's
// ms_deform_attn_core_pytorch), differentiable through LibTorch's autograd: the reference for
// tests.
at::Tensor ms_deform_attn_composite(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                    const at::Tensor& level_start_index,
                                    const at::Tensor& sampling_locations,
                                    const at::Tensor& attention_weights);

// spatial_shapes [L, 2] int64 -> level_start_index [L] int64: 0, then the running sum of H * W.
at::Tensor level_start_index(const at::Tensor& spatial_shapes);

}  // namespace setdet
