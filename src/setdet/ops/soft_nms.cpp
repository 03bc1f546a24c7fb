// setdet::soft_nms: Soft-NMS with mmcv.ops.soft_nms's definition (see
// setdet/core/dedup/soft_nms.h), except that a box whose score is below min_score is never emitted.
#include "setdet/core/dedup/soft_nms.h"

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <tuple>

#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

// boxes [N, 4] xyxy, scores [N] -> (int64 [K] indices in selection order, [K] decayed scores).
std::tuple<at::Tensor, at::Tensor> soft_nms_kernel(const at::Tensor& boxes,
                                                   const at::Tensor& scores, double iou_threshold,
                                                   double sigma, double min_score,
                                                   c10::string_view method) {
  constexpr const char* kOp = "setdet::soft_nms";
  check_boxes(boxes, kOp, "boxes");
  check_scores(scores, boxes, kOp);
  check_in_range(iou_threshold, 0.0, 1.0, kOp, "iou_threshold");
  TORCH_CHECK(std::isfinite(sigma) && sigma > 0.0, kOp, ": sigma must be finite and > 0, got ",
              sigma);
  check_finite_value(min_score, kOp, "min_score");
  SoftNmsOptions opts;
  if (method == "linear") {
    opts.method = SoftNmsMethod::kLinear;
  } else if (method == "gaussian") {
    opts.method = SoftNmsMethod::kGaussian;
  } else if (method == "naive") {
    opts.method = SoftNmsMethod::kNaive;
  } else {
    TORCH_CHECK(false, kOp, ": method must be 'linear', 'gaussian' or 'naive', got '",
                std::string(method), "'");
  }
  opts.iou_threshold = iou_threshold;
  opts.sigma = sigma;
  opts.min_score = min_score;
  const int64_t n = boxes.size(0);
  if (n == 0) return {empty_indices(boxes.device()), at::empty({0}, scores.options())};
  const at::Tensor b = cpu_contiguous(boxes), s = cpu_contiguous(scores);
  at::Tensor keep, kept_scores;
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), kOp, [&] {
    check_finite<scalar_t>(b, kOp, "boxes");
    check_finite<scalar_t>(s, kOp, "scores");
    const SoftNmsResult<scalar_t> r = call_core(kOp, [&] {
      return soft_nms(b.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), static_cast<size_t>(n), opts);
    });
    keep = to_tensor(r.indices, at::kLong, boxes.device());
    kept_scores = to_tensor(r.scores, b.scalar_type(), boxes.device());
  });
  return {keep, kept_scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) { m.impl("soft_nms", soft_nms_kernel); }

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("soft_nms", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace setdet::ops
