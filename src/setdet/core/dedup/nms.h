// Greedy and class-aware NMS on xyxy boxes (row-major [N, 4]), float or double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace setdet {

struct NmsOptions {
  double iou_threshold = 0.5;  // suppress when IoU > iou_threshold (strict), in [0, 1]
  // Boxes with score <= score_threshold are dropped before NMS (-inf: keep all). Compared in
  // the scores' type, as torch compares a float tensor with a Python float.
  double score_threshold = -std::numeric_limits<double>::infinity();
  int64_t pre_nms_top_k = -1;  // keep only the top-k scores before NMS (-1: all)
  int64_t max_output = -1;     // stop after this many kept boxes (-1: all)
};

// Same keep indices and order as torchvision.ops.nms (stable descending sort by score, ties in
// input order; a box is suppressed when its IoU with a kept box is > iou_threshold, IoU computed
// with torchvision's float expression; zero-area boxes never suppress nor get suppressed).
// Returns indices into the input, by descending score. Kept boxes are indexed by a multi-level
// grid, so each candidate is tested only against kept boxes that can reach the threshold.
// Throws setdet::Error on non-finite boxes/scores, a threshold outside [0, 1] or a top-k < -1.
template <typename T>
std::vector<int64_t> nms(const T* boxes, const T* scores, size_t n, const NmsOptions& opts = {});

// Same keep indices as torchvision.ops.batched_nms: NMS independently per value of idxs (any
// int64), the union sorted by score descending, equal scores by input index. (torchvision's
// per-class path for > 1000 boxes sorts the union with an unstable sort, so equal scores may come
// out in another order there; its coordinate-offset path for <= 1000 boxes can differ when boxes
// have coordinates below -1 or an IoU rounds across the threshold after the offset.)
// pre_nms_top_k and max_output apply per class; score_threshold before everything. Classes run
// in parallel (num_threads()); the result does not depend on the thread count.
template <typename T>
std::vector<int64_t> batched_nms(const T* boxes, const T* scores, const int64_t* idxs, size_t n,
                                 const NmsOptions& opts = {});

}  // namespace setdet
