// Weighted box fusion for ensembling several models' detections (Solovyev et al.), with
// ensemble_boxes.weighted_boxes_fusion's definition; the Open Images 2019 solution's
// "weighted NMS" ensembling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace setdet {

enum class WbfConfType { kAvg, kMax, kBoxAndModelAvg, kAbsentModelAware };
// "avg" | "max" | "box_and_model_avg" | "absent_model_aware_avg"
WbfConfType parse_wbf_conf_type(const std::string& s);

struct WbfOptions {
  double iou_threshold = 0.55;      // a box joins a cluster when IoU with its fused box > thr
  double skip_box_threshold = 0.0;  // boxes with score < thr are ignored
  WbfConfType conf_type = WbfConfType::kAvg;
  bool allows_overflow = false;
};

// One model's detections: boxes xyxy normalised to [0, 1] ([n, 4] row-major; clipped to [0, 1],
// x1 > x2 swapped, zero-area dropped, as ensemble_boxes does), scores, integer labels.
template <typename T>
struct WbfInput {
  const T* boxes = nullptr;
  const T* scores = nullptr;
  const int64_t* labels = nullptr;
  size_t n = 0;
};

template <typename T>
struct WbfResult {
  std::vector<T> boxes;  // [k, 4] xyxy normalised
  std::vector<T> scores;
  std::vector<int64_t> labels;
};

// weights: one per model (empty: all 1), each finite and > 0. Per label (in order of first
// appearance), boxes sorted by score * weight descending (ties: later input first, as numpy's
// argsort()[::-1]) join the cluster whose fused box has the highest IoU with them if that IoU is
// > iou_threshold, else start a new cluster. Fused box: score-weighted mean of the members,
// accumulated in float32 as ensemble_boxes 1.0.9 does (fused score and weight stored as
// float32 too); a cluster whose scores sum to 0 takes the plain mean. Fused score per conf_type:
// avg: mean(score * weight) * min(#models, #members) / sum(weights) (#members without the
// min when allows_overflow); max: max(score * weight) / max(weights); box_and_model_avg:
// mean * #members / sum(member weights) * sum(weights of the models present) / sum(weights);
// absent_model_aware_avg: mean * #members / (sum(member weights) + sum(absent models' weights)).
// Output sorted by score descending (ties: reverse of label-then-cluster order). skip_box_threshold
// is compared with the unweighted score (score < thr skipped). Labels are processed in parallel.
// Throws setdet::Error on non-finite input, bad weights or iou_threshold outside [0, 1].
template <typename T>
WbfResult<T> weighted_boxes_fusion(const std::vector<WbfInput<T>>& models,
                                   const std::vector<double>& weights, const WbfOptions& opts = {});

}  // namespace setdet
