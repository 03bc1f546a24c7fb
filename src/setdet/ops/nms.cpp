// setdet::nms / batched_nms: same keep indices and order as torchvision.ops.nms / batched_nms
// (suppress when IoU > iou_threshold; stable descending score order).
#include "setdet/core/dedup/nms.h"

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

// boxes [N, 4] xyxy, scores [N] -> int64 [K] indices into boxes, by descending score.
at::Tensor nms_kernel(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  constexpr const char* kOp = "setdet::nms";
  check_boxes(boxes, kOp, "boxes");
  check_scores(scores, boxes, kOp);
  check_in_range(iou_threshold, 0.0, 1.0, kOp, "iou_threshold");
  const int64_t n = boxes.size(0);
  if (n == 0) return empty_indices(boxes.device());
  const at::Tensor b = cpu_contiguous(boxes), s = cpu_contiguous(scores);
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), kOp, [&] {
    check_finite<scalar_t>(b, kOp, "boxes");
    check_finite<scalar_t>(s, kOp, "scores");
    NmsOptions opts;
    opts.iou_threshold = iou_threshold;
    keep = call_core(kOp, [&] {
      return nms(b.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), static_cast<size_t>(n), opts);
    });
  });
  return to_tensor(keep, at::kLong, boxes.device());
}

// idxs [N] integer class of each box; NMS runs per class.
at::Tensor batched_nms_kernel(const at::Tensor& boxes, const at::Tensor& scores,
                              const at::Tensor& idxs, double iou_threshold) {
  constexpr const char* kOp = "setdet::batched_nms";
  check_boxes(boxes, kOp, "boxes");
  check_scores(scores, boxes, kOp);
  check_labels(idxs, boxes, kOp, "idxs");
  check_in_range(iou_threshold, 0.0, 1.0, kOp, "iou_threshold");
  const int64_t n = boxes.size(0);
  if (n == 0) return empty_indices(boxes.device());
  const at::Tensor b = cpu_contiguous(boxes), s = cpu_contiguous(scores);
  const at::Tensor c = cpu_contiguous(idxs).to(at::kLong);
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), kOp, [&] {
    check_finite<scalar_t>(b, kOp, "boxes");
    check_finite<scalar_t>(s, kOp, "scores");
    NmsOptions opts;
    opts.iou_threshold = iou_threshold;
    keep = call_core(kOp, [&] {
      return batched_nms(b.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), c.data_ptr<int64_t>(),
                         static_cast<size_t>(n), opts);
    });
  });
  return to_tensor(keep, at::kLong, boxes.device());
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) {
  m.impl("nms", nms_kernel);
  m.impl("batched_nms", batched_nms_kernel);
}

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("nms", torch::autograd::autogradNotImplementedFallback());
  m.impl("batched_nms", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace setdet::ops
