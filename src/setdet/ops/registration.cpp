// Schemas of torch.ops.setdet.*. Kernels are registered in <op>.cpp under
// CompositeExplicitAutograd (any device: computed on a contiguous CPU copy, returned on the input's
// device) and Autograd (not differentiable: backward through an output raises; roi_align is
// differentiable w.r.t. its input). Boxes are [N, 4] xyxy, float32 or float64; float outputs keep
// the input dtype, indices are int64.
#include <torch/library.h>

TORCH_LIBRARY(setdet, m) {
  // [N, M] pairwise matrices, as torchvision.ops (zero-area boxes: IoU 0, not NaN).
  m.def("setdet::box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");
  m.def("setdet::generalized_box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");
  m.def("setdet::distance_box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");

  // Kept indices by descending score, as torchvision.ops.nms / batched_nms (IoU > threshold
  // suppresses; idxs: integer class per box).
  m.def("setdet::nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def(
      "setdet::batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold)"
      " -> Tensor");

  // (kept indices in selection order, decayed scores), mmcv.ops.soft_nms's definition; method:
  // 'linear' | 'gaussian' | 'naive'.
  m.def(
      "setdet::soft_nms(Tensor boxes, Tensor scores, float iou_threshold, float sigma,"
      " float min_score, str method) -> (Tensor, Tensor)");

  // (kept indices by decayed score, decayed scores), Paddle's box matrix_nms; labels None: one
  // class; kernel: 'gaussian' | 'linear'; normalized False: widths x2 - x1 + 1.
  m.def(
      "setdet::matrix_nms(Tensor boxes, Tensor scores, Tensor? labels=None,"
      " str kernel=\"gaussian\", float sigma=2.0, float score_threshold=0.0,"
      " float post_threshold=0.0, int pre_top_k=-1, int keep_top_k=-1, bool normalized=True)"
      " -> (Tensor, Tensor)");

  // (fused boxes [K, 4], scores [K], int64 labels [K]) from one (boxes, scores, labels) triple
  // per model, boxes normalised to [0, 1]; ensemble_boxes.weighted_boxes_fusion's definition.
  m.def(
      "setdet::weighted_boxes_fusion(Tensor[] boxes, Tensor[] scores, Tensor[] labels,"
      " float[]? weights=None, float iou_threshold=0.55, float skip_box_threshold=0.0,"
      " str conf_type=\"avg\", bool allows_overflow=False) -> (Tensor, Tensor, Tensor)");

  // (rows ascending, cols) of a minimum-cost assignment of the [N, M] cost matrix, as
  // scipy.optimize.linear_sum_assignment.
  m.def("setdet::linear_sum_assignment(Tensor cost) -> (Tensor, Tensor)");

  // RoIAlign (Mask R-CNN) as torchvision.ops.roi_align: input [N, C, H, W] (float32, float64;
  // bfloat16 / float16 computed in float32), rois [K, 5] = (batch index, x1, y1, x2, y2) in input
  // pixels (times spatial_scale: map cells) -> [K, C, pooled_height, pooled_width], channels-last
  // when the input is. sampling_ratio <= 0: ceil(RoI size / pooled size) samples per bin and axis;
  // aligned: coordinates shifted by -0.5 (pixel centres) and no minimum RoI size of 1.
  // Parallel over channels / RoIs with LibTorch's threads (torch.set_num_threads).
  m.def(
      "setdet::roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height,"
      " int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  // Gradient of roi_align w.r.t. its input [batch_size, channels, height, width] (not
  // differentiable itself).
  m.def(
      "setdet::_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale,"
      " int pooled_height, int pooled_width, int batch_size, int channels, int height, int width,"
      " int sampling_ratio, bool aligned) -> Tensor");

  // Threads of setdet's own pool (all cores by default); set_num_threads(n <= 0) restores it.
  m.def("setdet::num_threads() -> int");
  m.def("setdet::set_num_threads(int n) -> int");

  // Multi-scale deformable attention as Deformable-DETR's MultiScaleDeformableAttnFunction: value
  // [N, S, M, D] (S = sum of H * W over the levels, each level row-major), spatial_shapes [L, 2]
  // int64 (H, W), level_start_index [L] int64 (first position of each level in S),
  // sampling_locations [N, Lq, M, L, P, 2] (x, y in [0, 1] of the level's map), attention_weights
  // [N, Lq, M, L, P] -> [N, Lq, M * D]: per head, the attention-weighted sum over levels and points
  // of grid_sample(align_corners=False, padding_mode='zeros') at 2 * loc - 1. float32, float64
  // (bfloat16 / float16 computed in float32; float32 under CPU autocast). CPU kernels parallel with
  // LibTorch's threads (torch.set_num_threads); other devices: grid_sample per level.
  m.def(
      "setdet::ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index,"
      " Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  // (grad_value, grad_sampling_locations, grad_attention_weights) of ms_deform_attn given
  // grad_output [N, Lq, M * D] (not differentiable itself).
  m.def(
      "setdet::_ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes,"
      " Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights)"
      " -> (Tensor, Tensor, Tensor)");
}
