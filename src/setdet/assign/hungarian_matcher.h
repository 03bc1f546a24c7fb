// Deformable DETR's HungarianMatcher (Zhu et al. 2021; DETR, Carion et al. 2020): one prediction
// per GT, the optimal bipartite matching under
//   C = cost_bbox * L1(cxcywh) + cost_class * focal class cost - cost_giou * GIoU,
// focal class cost = alpha (1 - p)^gamma (-log(p + 1e-8)) - (1 - alpha) p^gamma (-log(1 - p +
// 1e-8)) at the GT's class, solved per image with setdet_core's linear_sum_assignment (scipy's
// optimum).
#pragma once

#include <ATen/core/Tensor.h>

#include "setdet/assign/deta_assigner.h"
#include "setdet/config/config.h"

namespace setdet {

struct HungarianMatcherOptions {
  double cost_class = 2.0;
  double cost_bbox = 5.0;
  double cost_giou = 2.0;
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
};

// logits [Q, C]; boxes [Q, 4] and gt_boxes [M, 4] normalised (cx, cy, w, h); gt_labels [M] int64
// in [0, C) -> [Q, M] float32 cost.
at::Tensor hungarian_cost(const at::Tensor& logits, const at::Tensor& boxes,
                          const at::Tensor& gt_labels, const at::Tensor& gt_boxes,
                          const HungarianMatcherOptions& options);

// The min(Q, M) pairs of the optimal matching, predictions ascending (as scipy returns them).
PositivePairs hungarian_match(const at::Tensor& logits, const at::Tensor& boxes,
                              const at::Tensor& gt_labels, const at::Tensor& gt_boxes,
                              const HungarianMatcherOptions& options);

// Reads {type, cost_class, cost_bbox, cost_giou} (focal_alpha / focal_gamma come from the loss;
// `type` is the caller's).
HungarianMatcherOptions hungarian_matcher_options(const Config& cfg,
                                                  const HungarianMatcherOptions& defaults);

}  // namespace setdet
