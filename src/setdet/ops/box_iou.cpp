// setdet::box_iou / generalized_box_iou / distance_box_iou: pairwise [N, M] matrices of xyxy
// boxes, as torchvision.ops.{box_iou, generalized_box_iou, distance_box_iou}, except that
// zero-area boxes give IoU 0 instead of NaN.
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include "setdet/core/boxes.h"
#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

// fn(a, n, b, m, out) fills the [n, m] matrix from setdet/core/boxes.h.
template <typename Fn>
at::Tensor pairwise(const char* op, const at::Tensor& boxes1, const at::Tensor& boxes2, Fn fn) {
  check_boxes(boxes1, op, "boxes1");
  check_boxes(boxes2, op, "boxes2");
  TORCH_CHECK(boxes2.scalar_type() == boxes1.scalar_type(), op,
              ": boxes2 must have the same dtype as boxes1 (", dtype_name(boxes1.scalar_type()),
              "), got ", dtype_name(boxes2.scalar_type()));
  TORCH_CHECK(boxes2.device() == boxes1.device(), op,
              ": boxes2 must be on the same device as boxes1 (", boxes1.device(), "), got ",
              boxes2.device());
  const int64_t n = boxes1.size(0), m = boxes2.size(0);
  if (n == 0 || m == 0) return at::empty({n, m}, boxes1.options());
  const at::Tensor a = cpu_contiguous(boxes1), b = cpu_contiguous(boxes2);
  at::Tensor out = at::empty({n, m}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "setdet_pairwise_box_iou", [&] {
    check_finite<scalar_t>(a, op, "boxes1");
    check_finite<scalar_t>(b, op, "boxes2");
    call_core(op, [&] {
      fn(a.data_ptr<scalar_t>(), static_cast<size_t>(n), b.data_ptr<scalar_t>(),
         static_cast<size_t>(m), out.data_ptr<scalar_t>());
    });
  });
  return out.to(boxes1.device());
}

at::Tensor box_iou_kernel(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  return pairwise("setdet::box_iou", boxes1, boxes2,
                  [](const auto* a, size_t n, const auto* b, size_t m, auto* out) {
                    box_iou_matrix(a, n, b, m, out);
                  });
}

at::Tensor generalized_box_iou_kernel(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  return pairwise("setdet::generalized_box_iou", boxes1, boxes2,
                  [](const auto* a, size_t n, const auto* b, size_t m, auto* out) {
                    generalized_box_iou_matrix(a, n, b, m, out);
                  });
}

at::Tensor distance_box_iou_kernel(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  return pairwise("setdet::distance_box_iou", boxes1, boxes2,
                  [](const auto* a, size_t n, const auto* b, size_t m, auto* out) {
                    distance_box_iou_matrix(a, n, b, m, out);
                  });
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) {
  m.impl("box_iou", box_iou_kernel);
  m.impl("generalized_box_iou", generalized_box_iou_kernel);
  m.impl("distance_box_iou", distance_box_iou_kernel);
}

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("box_iou", torch::autograd::autogradNotImplementedFallback());
  m.impl("generalized_box_iou", torch::autograd::autogradNotImplementedFallback());
  m.impl("distance_box_iou", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace setdet::ops
