#include "setdet/core/dedup/matrix_nms.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "setdet/core/error.h"
#include "setdet/core/parallel.h"

namespace setdet {

MatrixNmsKernel parse_matrix_nms_kernel(const std::string& s) {
  if (s == "gaussian") return MatrixNmsKernel::kGaussian;
  if (s == "linear") return MatrixNmsKernel::kLinear;
  throw Error(
      detail::concat("matrix_nms: kernel must be \"gaussian\" or \"linear\", got \"", s, "\""));
}

namespace {

// Paddle's JaccardOverlap / BBoxArea: boxes that do not touch have IoU 0; touching or
// overlapping boxes use widths min(x2) - max(x1) + offset (offset 1 when not normalized). An
// inverted box has area 0. A 0 union gives IoU 0.
template <typename T>
T paddle_iou(const T* a, const T* b, T offset) {
  if (b[0] > a[2] || b[2] < a[0] || b[1] > a[3] || b[3] < a[1]) return T(0);
  const T inter = (std::min(a[2], b[2]) - std::max(a[0], b[0]) + offset) *
                  (std::min(a[3], b[3]) - std::max(a[1], b[1]) + offset);
  auto area = [offset](const T* p) {
    if (p[2] < p[0] || p[3] < p[1]) return T(0);
    return (p[2] - p[0] + offset) * (p[3] - p[1] + offset);
  };
  const T uni = area(a) + area(b) - inter;
  if (!(inter > T(0)) || !(uni > T(0))) return T(0);
  return inter / uni;
}

struct Candidate {
  int64_t label;
  int64_t index;
};

}  // namespace

template <typename T>
MatrixNmsResult<T> matrix_nms(const T* boxes, const T* scores, const int64_t* labels, size_t n,
                              const MatrixNmsOptions& opts) {
  SETDET_CHECK(std::isfinite(opts.sigma) && opts.sigma > 0.0,
               "matrix_nms: sigma must be a finite number > 0, got ", opts.sigma);
  SETDET_CHECK(std::isfinite(opts.score_threshold),
               "matrix_nms: score_threshold must be finite, got ", opts.score_threshold);
  SETDET_CHECK(std::isfinite(opts.post_threshold),
               "matrix_nms: post_threshold must be finite, got ", opts.post_threshold);
  SETDET_CHECK(opts.pre_top_k >= -1, "matrix_nms: pre_top_k must be -1 (all) or >= 0, got ",
               opts.pre_top_k);
  SETDET_CHECK(opts.keep_top_k >= -1, "matrix_nms: keep_top_k must be -1 (all) or >= 0, got ",
               opts.keep_top_k);
  MatrixNmsResult<T> result;
  if (n == 0) return result;
  SETDET_CHECK(boxes != nullptr && scores != nullptr,
               "matrix_nms: boxes and scores must not be null for n = ", n);
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) {
      SETDET_CHECK(std::isfinite(boxes[4 * i + k]), "matrix_nms: boxes[", i,
                   "] has a non-finite coordinate (", boxes[4 * i + k], ")");
    }
    SETDET_CHECK(std::isfinite(scores[i]), "matrix_nms: scores[", i, "] is not finite (", scores[i],
                 ")");
  }
  const T score_thr = static_cast<T>(opts.score_threshold);
  const T post_thr = static_cast<T>(opts.post_threshold);
  const T sigma = static_cast<T>(opts.sigma);
  const T offset = opts.normalized ? T(0) : T(1);
  const bool gaussian = opts.kernel == MatrixNmsKernel::kGaussian;

  // Entries above score_threshold grouped by label ascending, each group by score descending
  // (ties by input index).
  std::vector<Candidate> cand;
  for (size_t i = 0; i < n; ++i) {
    if (scores[i] > score_thr) cand.push_back({labels ? labels[i] : 0, static_cast<int64_t>(i)});
  }
  std::sort(cand.begin(), cand.end(), [scores](const Candidate& a, const Candidate& b) {
    if (a.label != b.label) return a.label < b.label;
    if (scores[a.index] != scores[b.index]) return scores[a.index] > scores[b.index];
    return a.index < b.index;
  });

  std::vector<int64_t> sel_index;
  std::vector<T> sel_score;
  std::vector<T> iou_max, decay;
  std::vector<const T*> bx;
  for (size_t g0 = 0; g0 < cand.size();) {
    size_t g1 = g0;
    while (g1 < cand.size() && cand[g1].label == cand[g0].label) ++g1;
    size_t k = g1 - g0;
    if (opts.pre_top_k >= 0) k = std::min(k, static_cast<size_t>(opts.pre_top_k));
    bx.resize(k);
    for (size_t i = 0; i < k; ++i) bx[i] = boxes + 4 * cand[g0 + i].index;
    iou_max.assign(k, T(0));
    decay.assign(k, T(1));
    const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, k));
    // iou_max[i] = max_{j<i} iou(i, j)
    parallel_for(1, static_cast<int64_t>(k), grain, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        T m = T(0);
        for (int64_t j = 0; j < i; ++j) m = std::max(m, paddle_iou(bx[i], bx[j], offset));
        iou_max[static_cast<size_t>(i)] = m;
      }
    });
    parallel_for(1, static_cast<int64_t>(k), grain, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        T d = T(1);
        for (int64_t j = 0; j < i; ++j) {
          const T iou = paddle_iou(bx[i], bx[j], offset);
          const T mx = iou_max[static_cast<size_t>(j)];
          if (gaussian) {
            d = std::min(d, static_cast<T>(std::exp((mx * mx - iou * iou) * sigma)));
          } else {
            const double denom = 1.0 - static_cast<double>(mx);
            if (denom == 0.0) continue;  // Paddle: +inf or NaN, ignored by std::min
            d = std::min(d, static_cast<T>((1.0 - static_cast<double>(iou)) / denom));
          }
        }
        decay[static_cast<size_t>(i)] = d;
      }
    });
    for (size_t i = 0; i < k; ++i) {
      const int64_t idx = cand[g0 + i].index;
      const T ds = decay[i] * scores[idx];
      if (!(ds > post_thr)) continue;
      sel_index.push_back(idx);
      sel_score.push_back(ds);
    }
    g0 = g1;
  }

  std::vector<size_t> order(sel_index.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sel_score[a] > sel_score[b]; });
  size_t count = order.size();
  if (opts.keep_top_k >= 0) count = std::min(count, static_cast<size_t>(opts.keep_top_k));
  result.indices.reserve(count);
  result.scores.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    result.indices.push_back(sel_index[order[i]]);
    result.scores.push_back(sel_score[order[i]]);
  }
  return result;
}

template MatrixNmsResult<float> matrix_nms<float>(const float*, const float*, const int64_t*,
                                                  size_t, const MatrixNmsOptions&);
template MatrixNmsResult<double> matrix_nms<double>(const double*, const double*, const int64_t*,
                                                    size_t, const MatrixNmsOptions&);

}  // namespace setdet
