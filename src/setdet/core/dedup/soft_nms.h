// Soft-NMS (Bodla et al. 2017) with mmcv.ops.soft_nms's definition.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace setdet {

enum class SoftNmsMethod { kLinear, kGaussian, kNaive };
SoftNmsMethod parse_soft_nms_method(const std::string& s);  // "linear" | "gaussian" | "naive"

struct SoftNmsOptions {
  double iou_threshold = 0.3;  // linear / naive decay only when IoU >= iou_threshold
  double sigma = 0.5;          // gaussian: s *= exp(-iou^2 / sigma)
  double min_score = 1e-3;     // boxes whose (decayed) score < min_score are dropped
  SoftNmsMethod method = SoftNmsMethod::kLinear;
  int64_t max_output = -1;  // stop after this many selected (-1: all)
};

template <typename T>
struct SoftNmsResult {
  std::vector<int64_t> indices;  // into the input, in selection order
  std::vector<T> scores;         // decayed scores of those boxes
};

// mmcv.ops.soft_nms semantics (its CPU kernel, offset 0, arithmetic in T): repeatedly select the
// highest current score (ties: lowest index), decay the others (linear: s *= 1 - iou when
// iou >= thr; gaussian: s *= exp(-iou^2 / sigma); naive: s = 0 when iou >= thr), drop boxes
// whose score falls below min_score. Returns the selected boxes in selection order with their
// decayed scores. Unlike mmcv (issue 1726) a top box below min_score is never emitted; boxes
// that do not intersect have IoU 0 (mmcv: NaN for two zero-area boxes). Not ensemble_boxes'
// soft_nms (gaussian default, strict >, original scores returned). O(N^2).
// Throws setdet::Error on non-finite boxes/scores, iou_threshold outside [0, 1], sigma <= 0.
template <typename T>
SoftNmsResult<T> soft_nms(const T* boxes, const T* scores, size_t n,
                          const SoftNmsOptions& opts = {});

}  // namespace setdet
