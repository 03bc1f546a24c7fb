// Schemas of torch.ops.setdet.*; kernels are registered beside each operator.
#include <torch/library.h>

TORCH_LIBRARY(setdet, m) {
  m.def("setdet::box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");
  m.def("setdet::nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("setdet::batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  m.def(
      "setdet::soft_nms(Tensor boxes, Tensor scores, float iou_threshold, float sigma, "
      "float min_score, str method) -> (Tensor, Tensor)");
  m.def("setdet::linear_sum_assignment(Tensor cost) -> (Tensor, Tensor)");
}
