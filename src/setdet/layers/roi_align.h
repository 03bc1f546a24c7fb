// RoIAlign for the models: the C++ entry to torch.ops.setdet.roi_align (src/setdet/ops/
// roi_align.cpp, torchvision.ops.roi_align's semantics), called through the c10 dispatcher so
// that autograd records it. The `setdet` library links libsetdet_ops, which registers the op.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace setdet {

// input [N, C, H, W] (float32, float64; bfloat16 / float16 computed in float32), rois [K, 5] =
// (batch index, x1, y1, x2, y2) in input-image pixels, spatial_scale = 1 / stride of the map ->
// [K, C, pooled_height, pooled_width] (channels-last when the input is). sampling_ratio <= 0:
// ceil(RoI size / pooled size) samples per bin and axis; aligned: pixel-centre coordinates
// (-0.5 shift, MMDetection / Detectron2) instead of torchvision's default false. Differentiable
// w.r.t. input. Bad arguments raise c10::Error naming the argument.
at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                     int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                     bool aligned);

// Per-image boxes [N_i, 4] xyxy -> rois [sum N_i, 5] with the image index in column 0, as
// torchvision.ops._utils.convert_boxes_to_roi_format (dtype and device of the first box tensor).
at::Tensor boxes_to_rois(const std::vector<at::Tensor>& boxes);

}  // namespace setdet
