// Anchor-to-GT assignment by maximum IoU (RetinaNet, Lin et al. 2017, Sec. 4), as torchvision's
// det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True) used by its
// RetinaNet, which is MMDetection's MaxIoUAssigner(pos 0.5, neg 0.4, min_pos_iou 0) up to the
// low-quality rule below.
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "setdet/config/registry.h"

namespace setdet {

// Per-anchor assignment codes besides a GT index >= 0.
constexpr int64_t kAnchorNegative = -1;  // background
constexpr int64_t kAnchorIgnored = -2;   // between the thresholds: no loss at all

// Assigns the anchors of one image. Builders of AnchorAssignerRegistry return a ready assigner.
class AnchorAssigner {
 public:
  virtual ~AnchorAssigner() = default;
  // anchors [N, 4], gt_boxes [M, 4] xyxy input pixels -> [N] int64: the matched GT index, or
  // kAnchorNegative / kAnchorIgnored. No GT: every anchor negative.
  virtual at::Tensor assign(const at::Tensor& anchors, const at::Tensor& gt_boxes) const = 0;
};

SETDET_DEFINE_REGISTRY(AnchorAssignerRegistry, std::shared_ptr<AnchorAssigner>, "assigner")

// Pairwise IoU as torchvision.ops.box_iou: [M, 4] x [N, 4] -> [M, N]; zero-area pairs give NaN
// only when both boxes are empty (0 / 0), as torchvision.
at::Tensor pairwise_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2);

struct MaxIoUAssignerOptions {
  TORCH_ARG(double, pos_iou_thr) = 0.5;  // IoU >= pos: positive
  TORCH_ARG(double, neg_iou_thr) = 0.4;  // IoU < neg: negative; in between: ignored
  // Each GT also claims the anchors of highest IoU with it (ties included), even below
  // pos_iou_thr; such an anchor takes the GT it overlaps most (torchvision's
  // set_low_quality_matches_). min_pos_iou > 0 also requires that anchor's best IoU to exceed it
  // (0, torchvision: no such check, so a GT overlapping no anchor claims every anchor).
  TORCH_ARG(bool, allow_low_quality_matches) = true;
  TORCH_ARG(double, min_pos_iou) = 0.0;
};

// Registered as "MaxIoUAssigner"; keys: type, pos_iou_thr, neg_iou_thr,
// allow_low_quality_matches, min_pos_iou.
class MaxIoUAssigner : public AnchorAssigner {
 public:
  explicit MaxIoUAssigner(MaxIoUAssignerOptions options = {});
  at::Tensor assign(const at::Tensor& anchors, const at::Tensor& gt_boxes) const override;
  const MaxIoUAssignerOptions& options() const { return options_; }

 private:
  MaxIoUAssignerOptions options_;
};

}  // namespace setdet
