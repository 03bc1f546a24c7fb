// Matrix NMS, box version (SOLOv2's parallel decay, as PaddlePaddle's matrix_nms).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace setdet {

enum class MatrixNmsKernel { kGaussian, kLinear };
MatrixNmsKernel parse_matrix_nms_kernel(const std::string& s);  // "gaussian" | "linear"

struct MatrixNmsOptions {
  MatrixNmsKernel kernel = MatrixNmsKernel::kGaussian;
  double sigma = 2.0;            // gaussian: f(iou) = exp(-sigma * iou^2)
  double score_threshold = 0.0;  // drop boxes with score <= this before decay
  double post_threshold = 0.0;   // drop boxes whose decayed score <= this
  int64_t pre_top_k = -1;        // per class, top-k by score before decay (-1: all)
  int64_t keep_top_k = -1;       // after decay, overall top-k (-1: all)
  bool normalized = true;        // false: Paddle's pixel convention, widths x2 - x1 + 1
};

template <typename T>
struct MatrixNmsResult {
  std::vector<int64_t> indices;  // into the input, by decayed score descending (stable)
  std::vector<T> scores;         // decayed scores
};

// Same decayed scores and selection as Paddle's CPU matrix_nms kernel (phi MatrixNMSKernel), with
// the (box, class) pairs given as flat entries: per class (labels; nullptr for one class), keep
// score > score_threshold, sort by score (descending, ties by input index), take pre_top_k,
// decay_j = min(1, min_{i<j} f(iou_ij) / f(max_{k<i} iou_ki)) (terms with f(max) = 0 skipped),
// keep score_j * decay_j > post_threshold. Classes are concatenated in ascending label order
// and stably sorted by decayed score, then cut to keep_top_k.
// Throws setdet::Error on non-finite boxes/scores/thresholds, sigma <= 0 or top-k < -1.
template <typename T>
MatrixNmsResult<T> matrix_nms(const T* boxes, const T* scores, const int64_t* labels, size_t n,
                              const MatrixNmsOptions& opts = {});

}  // namespace setdet
