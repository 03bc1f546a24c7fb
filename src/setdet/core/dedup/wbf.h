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
WbfConfType parse_wbf_conf_type(const std::string& s);  // avg | max | box_and_model_avg | absent_model_aware_avg

struct WbfOptions {
  double iou_threshold = 0.55;     // a box joins a cluster when IoU with its fused box > thr
  double skip_box_threshold = 0.0; // boxes with score < thr are ignored
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

// weights: one per model (empty: all 1). Output sorted by score descending.
template <typename T>
WbfResult<T> weighted_boxes_fusion(const std::vector<WbfInput<T>>& models,
                                   const std::vector<double>& weights, const WbfOptions& opts = {});

}  // namespace setdet
