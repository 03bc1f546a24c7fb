// setdet::matrix_nms: box Matrix NMS (SOLOv2's parallel decay, as PaddlePaddle's matrix_nms; see
// setdet/core/dedup/matrix_nms.h).
#include "setdet/core/dedup/matrix_nms.h"

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <tuple>

#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

// boxes [N, 4] xyxy, scores [N], labels [N] integer or None (one class); normalized = false uses
// Paddle's pixel convention (widths x2 - x1 + 1)
// -> (int64 [K] indices by decayed score descending, [K] decayed scores).
std::tuple<at::Tensor, at::Tensor> matrix_nms_kernel(
    const at::Tensor& boxes, const at::Tensor& scores, const c10::optional<at::Tensor>& labels,
    c10::string_view kernel, double sigma, double score_threshold, double post_threshold,
    int64_t pre_top_k, int64_t keep_top_k, bool normalized) {
  constexpr const char* kOp = "setdet::matrix_nms";
  check_boxes(boxes, kOp, "boxes");
  check_scores(scores, boxes, kOp);
  const bool has_labels = labels.has_value() && labels->defined();
  if (has_labels) check_labels(*labels, boxes, kOp, "labels");
  MatrixNmsOptions opts;
  if (kernel == "gaussian") {
    opts.kernel = MatrixNmsKernel::kGaussian;
  } else if (kernel == "linear") {
    opts.kernel = MatrixNmsKernel::kLinear;
  } else {
    TORCH_CHECK(false, kOp, ": kernel must be 'gaussian' or 'linear', got '", std::string(kernel),
                "'");
  }
  TORCH_CHECK(std::isfinite(sigma) && sigma > 0.0, kOp, ": sigma must be finite and > 0, got ",
              sigma);
  check_finite_value(score_threshold, kOp, "score_threshold");
  check_finite_value(post_threshold, kOp, "post_threshold");
  TORCH_CHECK(pre_top_k >= -1, kOp, ": pre_top_k must be -1 (all) or >= 0, got ", pre_top_k);
  TORCH_CHECK(keep_top_k >= -1, kOp, ": keep_top_k must be -1 (all) or >= 0, got ", keep_top_k);
  opts.sigma = sigma;
  opts.score_threshold = score_threshold;
  opts.post_threshold = post_threshold;
  opts.pre_top_k = pre_top_k;
  opts.keep_top_k = keep_top_k;
  opts.normalized = normalized;
  const int64_t n = boxes.size(0);
  if (n == 0) return {empty_indices(boxes.device()), at::empty({0}, scores.options())};
  const at::Tensor b = cpu_contiguous(boxes), s = cpu_contiguous(scores);
  const at::Tensor c = has_labels ? cpu_contiguous(*labels).to(at::kLong) : at::Tensor();
  at::Tensor keep, kept_scores;
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), kOp, [&] {
    check_finite<scalar_t>(b, kOp, "boxes");
    check_finite<scalar_t>(s, kOp, "scores");
    const MatrixNmsResult<scalar_t> r = call_core(kOp, [&] {
      return matrix_nms(b.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                        has_labels ? c.data_ptr<int64_t>() : nullptr, static_cast<size_t>(n), opts);
    });
    keep = to_tensor(r.indices, at::kLong, boxes.device());
    kept_scores = to_tensor(r.scores, b.scalar_type(), boxes.device());
  });
  return {keep, kept_scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) {
  m.impl("matrix_nms", matrix_nms_kernel);
}

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("matrix_nms", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace setdet::ops
