#include "setdet/assign/hungarian_matcher.h"

#include <ATen/ATen.h>

#include <cmath>

#include "setdet/core/match/lsa.h"
#include "setdet/losses/iou_loss.h"
#include "setdet/structures/box_ops.h"

namespace setdet {

at::Tensor hungarian_cost(const at::Tensor& logits, const at::Tensor& boxes,
                          const at::Tensor& gt_labels, const at::Tensor& gt_boxes,
                          const HungarianMatcherOptions& o) {
  TORCH_CHECK(logits.dim() == 2 && boxes.dim() == 2 && boxes.size(1) == 4 &&
                  boxes.size(0) == logits.size(0),
              "hungarian_cost: logits must be [Q, C] and boxes [Q, 4], got ", logits.sizes(),
              " and ", boxes.sizes());
  TORCH_CHECK(gt_boxes.dim() == 2 && gt_boxes.size(1) == 4 && gt_labels.dim() == 1 &&
                  gt_labels.size(0) == gt_boxes.size(0),
              "hungarian_cost: gt_boxes must be [M, 4] and gt_labels [M], got ", gt_boxes.sizes(),
              " and ", gt_labels.sizes());
  const at::Tensor p = logits.detach().to(at::kFloat).sigmoid();
  const at::Tensor neg = (1 - o.focal_alpha) * p.pow(o.focal_gamma) * -(1 - p + 1e-8).log();
  const at::Tensor pos = o.focal_alpha * (1 - p).pow(o.focal_gamma) * -(p + 1e-8).log();
  const at::Tensor labels = gt_labels.to(p.device(), at::kLong);
  const at::Tensor cost_class = pos.index_select(1, labels) - neg.index_select(1, labels);
  const at::Tensor b = boxes.detach().to(at::kFloat);
  const at::Tensor g = gt_boxes.to(b.device(), at::kFloat);
  const at::Tensor cost_bbox = (b.unsqueeze(1) - g.unsqueeze(0)).abs().sum(-1);
  const at::Tensor cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(b), box_cxcywh_to_xyxy(g));
  return o.cost_bbox * cost_bbox + o.cost_class * cost_class + o.cost_giou * cost_giou;
}

PositivePairs hungarian_match(const at::Tensor& logits, const at::Tensor& boxes,
                              const at::Tensor& gt_labels, const at::Tensor& gt_boxes,
                              const HungarianMatcherOptions& options) {
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(logits.device());
  if (gt_boxes.size(0) == 0 || logits.size(0) == 0) {
    return {at::empty({0}, long_opts), at::empty({0}, long_opts)};
  }
  const at::Tensor cost =
      hungarian_cost(logits, boxes, gt_labels, gt_boxes, options).to(at::kCPU).contiguous();
  const Assignment a = linear_sum_assignment(
      cost.data_ptr<float>(), static_cast<size_t>(cost.size(0)), static_cast<size_t>(cost.size(1)));
  return {at::tensor(a.rows, at::kLong).to(logits.device()),
          at::tensor(a.cols, at::kLong).to(logits.device())};
}

HungarianMatcherOptions hungarian_matcher_options(const Config& cfg,
                                                  const HungarianMatcherOptions& defaults) {
  cfg.check_keys({"type", "cost_class", "cost_bbox", "cost_giou"});
  HungarianMatcherOptions o = defaults;
  o.cost_class = cfg.get<double>("cost_class", o.cost_class);
  o.cost_bbox = cfg.get<double>("cost_bbox", o.cost_bbox);
  o.cost_giou = cfg.get<double>("cost_giou", o.cost_giou);
  for (const auto& [key, v] : {std::pair<const char*, double>{"cost_class", o.cost_class},
                               {"cost_bbox", o.cost_bbox},
                               {"cost_giou", o.cost_giou}}) {
    SETDET_CHECK(std::isfinite(v) && v >= 0, cfg.where(), ".", key,
                 ": expected a finite value >= 0, got ", v);
  }
  SETDET_CHECK(o.cost_class > 0 || o.cost_bbox > 0 || o.cost_giou > 0, cfg.where(),
               ": the costs cannot all be 0");
  return o;
}

}  // namespace setdet
