// Point-to-GT assignment for FCOS (Tian et al. 2019, Sec. 3.2 / 3.4 and the centre-sampling
// variant of the authors' code), vectorised over all levels, points and GT boxes of a batch.
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "setdet/config/registry.h"

namespace setdet {

// Points of all levels, concatenated (level-major, then row-major y, x within a level).
struct PointSet {
  at::Tensor points;                // [P, 2] float32 (x, y), input pixels
  std::vector<int64_t> strides;     // per level
  std::vector<int64_t> num_points;  // per level, sums to P
};

struct PointTargets {
  at::Tensor labels;  // [B, P] int64, background = num_classes
  at::Tensor
      distances;  // [B, P, 4] float32 (l, t, r, b) to the matched GT, input pixels (0 for bg)
  at::Tensor centerness;  // [B, P] float32, sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)); 0 for bg
  at::Tensor matched;     // [B, P] int64 index into that image's GT boxes, -1 for background
  int64_t num_positives = 0;
};

class PointAssigner {
 public:
  virtual ~PointAssigner() = default;
  // gt_boxes[i]: [N_i, 4] xyxy input pixels; gt_labels[i]: [N_i] int64 in [0, num_classes).
  virtual PointTargets assign(const PointSet& points, const std::vector<at::Tensor>& gt_boxes,
                              const std::vector<at::Tensor>& gt_labels,
                              int64_t num_classes) const = 0;
};

SETDET_DEFINE_REGISTRY(PointAssignerRegistry, std::shared_ptr<PointAssigner>, "assigner")

using RegressRanges = std::vector<std::pair<double, double>>;

struct FCOSAssignerOptions {
  // One [lo, hi] per level: a point is a candidate for a GT when lo <= max(l, t, r, b) <= hi.
  TORCH_ARG(RegressRanges, regress_ranges) = RegressRanges{
      {-1, 64}, {64, 128}, {128, 256}, {256, 512}, {512, std::numeric_limits<double>::infinity()}};
  // Centre sampling: only points within radius * stride of the GT centre (and inside the GT)
  // are candidates. Off: every point inside the GT.
  TORCH_ARG(bool, center_sampling) = true;
  TORCH_ARG(double, center_sample_radius) = 1.5;
};

// A point matched by several GTs takes the one of smallest area (ties: the lower GT index).
// Registered as "FCOSAssigner"; keys: type, regress_ranges, center_sampling, center_sample_radius.
class FCOSAssigner : public PointAssigner {
 public:
  explicit FCOSAssigner(FCOSAssignerOptions options = {});
  PointTargets assign(const PointSet& points, const std::vector<at::Tensor>& gt_boxes,
                      const std::vector<at::Tensor>& gt_labels, int64_t num_classes) const override;
  const FCOSAssignerOptions& options() const { return options_; }

 private:
  FCOSAssignerOptions options_;
};

}  // namespace setdet
