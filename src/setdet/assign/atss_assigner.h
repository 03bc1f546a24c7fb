// Adaptive Training Sample Selection (Zhang et al. 2020, "Bridging the Gap Between Anchor-based
// and Anchor-free Detection via Adaptive Training Sample Selection", Alg. 1) in the point form of
// the paper's "FCOS + ATSS": each point carries one square anchor of side anchor_scale * stride
// centred on it; targets are FCOS's (l, t, r, b) and centre-ness. Vectorised over the batch.
#pragma once

#include <ATen/ATen.h>
#include <torch/arg.h>

#include "setdet/assign/fcos_assigner.h"

namespace setdet {

struct ATSSAssignerOptions {
  // Candidates per GT and level: the topk points nearest (L2) to the GT centre (all points of a
  // level with fewer).
  TORCH_ARG(int64_t, topk) = 9;
  // Side of each point's square anchor, in strides (mmdet's octave_base_scale).
  TORCH_ARG(double, anchor_scale) = 8.0;
};

// Per GT: candidates as above; IoU of each candidate's anchor with the GT; threshold = mean + std
// of the candidate IoUs (unbiased std, as torch.std in mmdet's ATSSAssigner; a GT with a single
// candidate gets std 0, where torch gives NaN and no positive); positive if IoU >= threshold and
// the point is inside the GT (min(l, t, r, b) > 0.01 px, as mmdet). A point positive for several
// GTs takes the one of highest IoU, ties to the lower GT index (mmdet's max over GTs).
// Candidates tied at the k-th distance are chosen as at::topk chooses them (as mmdet).
// Registered as "ATSSAssigner"; keys: type, topk, anchor_scale.
class ATSSAssigner : public PointAssigner {
 public:
  explicit ATSSAssigner(ATSSAssignerOptions options = {});
  PointTargets assign(const PointSet& points, const std::vector<at::Tensor>& gt_boxes,
                      const std::vector<at::Tensor>& gt_labels, int64_t num_classes) const override;
  const ATSSAssignerOptions& options() const { return options_; }

 private:
  ATSSAssignerOptions options_;
};

}  // namespace setdet
