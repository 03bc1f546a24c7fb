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
  double sigma = 2.0;             // gaussian: f(iou) = exp(-sigma * iou^2)
  double score_threshold = 0.0;   // drop boxes with score <= this before decay
  double post_threshold = 0.0;    // drop boxes whose decayed score <= this
  int64_t pre_top_k = -1;         // per class, top-k by score before decay (-1: all)
  int64_t keep_top_k = -1;        // after decay, overall top-k (-1: all)
};

template <typename T>
struct MatrixNmsResult {
  std::vector<int64_t> indices;  // into the input, by decayed score descending (stable)
  std::vector<T> scores;         // decayed scores
};

// Per class (labels; pass nullptr for one class): sort by score (stable), IoU upper triangle,
// decay_j = min_{i<j} f(iou_ij) / f(max_{k<i} iou_ki), score_j *= decay_j.
template <typename T>
MatrixNmsResult<T> matrix_nms(const T* boxes, const T* scores, const int64_t* labels, size_t n,
                              const MatrixNmsOptions& opts = {});

}  // namespace setdet
