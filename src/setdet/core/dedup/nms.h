// Greedy and class-aware NMS on xyxy boxes (row-major [N, 4]), float or double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace setdet {

struct NmsOptions {
  double iou_threshold = 0.5;  // suppress when IoU > iou_threshold (strict), in [0, 1]
  // Boxes with score <= score_threshold are dropped before NMS (-inf: keep all).
  double score_threshold = -std::numeric_limits<double>::infinity();
  int64_t pre_nms_top_k = -1;  // keep only the top-k scores before NMS (-1: all)
  int64_t max_output = -1;     // stop after this many kept boxes (-1: all)
};

// Same keep indices and order as torchvision.ops.nms (stable descending sort by score, ties in
// input order; a box is suppressed when its IoU with a kept box is > iou_threshold; zero-area
// boxes never suppress nor get suppressed). Returns indices into the input, by descending score.
// Throws setdet::Error on non-finite boxes/scores or a threshold outside [0, 1].
template <typename T>
std::vector<int64_t> nms(const T* boxes, const T* scores, size_t n, const NmsOptions& opts = {});

// Same keep indices and order as torchvision.ops.batched_nms: NMS independently per value of
// idxs, the union sorted by score descending (stable). pre_nms_top_k and max_output apply per
// class; score_threshold before everything.
template <typename T>
std::vector<int64_t> batched_nms(const T* boxes, const T* scores, const int64_t* idxs, size_t n,
                                 const NmsOptions& opts = {});

}  // namespace setdet
