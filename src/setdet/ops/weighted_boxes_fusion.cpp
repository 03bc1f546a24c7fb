// setdet::weighted_boxes_fusion: ensemble_boxes.weighted_boxes_fusion's definition (see
// setdet/core/dedup/wbf.h) over one tensor triple per model.
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "setdet/core/dedup/wbf.h"
#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

// boxes[i] [N_i, 4] xyxy normalised to [0, 1], scores[i] [N_i], labels[i] [N_i] integer, one
// weight per model (None: all 1) -> (fused boxes [K, 4], scores [K], int64 labels [K]), by
// score descending.
std::tuple<at::Tensor, at::Tensor, at::Tensor> weighted_boxes_fusion_kernel(
    at::TensorList boxes, at::TensorList scores, at::TensorList labels,
    c10::optional<at::ArrayRef<double>> weights, double iou_threshold, double skip_box_threshold,
    c10::string_view conf_type, bool allows_overflow) {
  constexpr const char* kOp = "setdet::weighted_boxes_fusion";
  const size_t models = boxes.size();
  TORCH_CHECK(scores.size() == models, kOp, ": scores must hold one tensor per model (boxes has ",
              models, "), got ", scores.size());
  TORCH_CHECK(labels.size() == models, kOp, ": labels must hold one tensor per model (boxes has ",
              models, "), got ", labels.size());
  if (weights.has_value()) {
    TORCH_CHECK(weights->size() == models, kOp,
                ": weights must hold one weight per model (boxes has ", models, "), got ",
                weights->size());
    for (size_t i = 0; i < models; ++i) {
      const double w = (*weights)[i];
      TORCH_CHECK(std::isfinite(w) && w > 0.0, kOp, ": weights[", i,
                  "] must be finite and > 0, got ", w);
    }
  }
  WbfOptions opts;
  if (conf_type == "avg") {
    opts.conf_type = WbfConfType::kAvg;
  } else if (conf_type == "max") {
    opts.conf_type = WbfConfType::kMax;
  } else if (conf_type == "box_and_model_avg") {
    opts.conf_type = WbfConfType::kBoxAndModelAvg;
  } else if (conf_type == "absent_model_aware_avg") {
    opts.conf_type = WbfConfType::kAbsentModelAware;
  } else {
    TORCH_CHECK(false, kOp,
                ": conf_type must be 'avg', 'max', 'box_and_model_avg' or "
                "'absent_model_aware_avg', got '",
                std::string(conf_type), "'");
  }
  check_in_range(iou_threshold, 0.0, 1.0, kOp, "iou_threshold");
  check_finite_value(skip_box_threshold, kOp, "skip_box_threshold");
  opts.iou_threshold = iou_threshold;
  opts.skip_box_threshold = skip_box_threshold;
  opts.allows_overflow = allows_overflow;

  if (models == 0) {
    return {at::empty({0, 4}, at::kFloat), at::empty({0}, at::kFloat), at::empty({0}, at::kLong)};
  }
  const at::Tensor& first = boxes[0];
  std::vector<at::Tensor> b(models), s(models), c(models);
  for (size_t i = 0; i < models; ++i) {
    const std::string bi = "boxes[" + std::to_string(i) + "]";
    const std::string si = "scores[" + std::to_string(i) + "]";
    const std::string li = "labels[" + std::to_string(i) + "]";
    check_boxes(boxes[i], kOp, bi.c_str());
    if (i > 0) {
      TORCH_CHECK(boxes[i].scalar_type() == first.scalar_type(), kOp, ": ", bi,
                  " must have the same dtype as boxes[0] (", dtype_name(first.scalar_type()),
                  "), got ", dtype_name(boxes[i].scalar_type()));
      TORCH_CHECK(boxes[i].device() == first.device(), kOp, ": ", bi,
                  " must be on the same device as boxes[0] (", first.device(), "), got ",
                  boxes[i].device());
    }
    check_scores(scores[i], boxes[i], kOp, si.c_str(), bi.c_str());
    check_labels(labels[i], boxes[i], kOp, li.c_str(), bi.c_str());
    b[i] = cpu_contiguous(boxes[i]);
    s[i] = cpu_contiguous(scores[i]);
    c[i] = cpu_contiguous(labels[i]).to(at::kLong);
  }
  std::vector<double> w;
  if (weights.has_value()) w.assign(weights->begin(), weights->end());

  at::Tensor out_boxes, out_scores, out_labels;
  AT_DISPATCH_FLOATING_TYPES(first.scalar_type(), kOp, [&] {
    std::vector<WbfInput<scalar_t>> inputs(models);
    for (size_t i = 0; i < models; ++i) {
      const std::string bi = "boxes[" + std::to_string(i) + "]";
      const std::string si = "scores[" + std::to_string(i) + "]";
      check_finite<scalar_t>(b[i], kOp, bi.c_str());
      check_finite<scalar_t>(s[i], kOp, si.c_str());
      inputs[i].boxes = b[i].data_ptr<scalar_t>();
      inputs[i].scores = s[i].data_ptr<scalar_t>();
      inputs[i].labels = c[i].data_ptr<int64_t>();
      inputs[i].n = static_cast<size_t>(b[i].size(0));
    }
    const WbfResult<scalar_t> r =
        call_core(kOp, [&] { return weighted_boxes_fusion(inputs, w, opts); });
    const int64_t k = static_cast<int64_t>(r.scores.size());
    TORCH_INTERNAL_ASSERT(r.boxes.size() == static_cast<size_t>(4 * k) &&
                          r.labels.size() == static_cast<size_t>(k));
    out_boxes = to_tensor(r.boxes, first.scalar_type(), first.device()).view({k, 4});
    out_scores = to_tensor(r.scores, first.scalar_type(), first.device());
    out_labels = to_tensor(r.labels, at::kLong, first.device());
  });
  return {out_boxes, out_scores, out_labels};
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) {
  m.impl("weighted_boxes_fusion", weighted_boxes_fusion_kernel);
}

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("weighted_boxes_fusion", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace setdet::ops
