#include "setdet/core/dedup/soft_nms.h"

#include <algorithm>
#include <cmath>

#include "setdet/core/error.h"

namespace setdet {

SoftNmsMethod parse_soft_nms_method(const std::string& s) {
  if (s == "linear") return SoftNmsMethod::kLinear;
  if (s == "gaussian") return SoftNmsMethod::kGaussian;
  if (s == "naive") return SoftNmsMethod::kNaive;
  throw Error(detail::concat(
      "soft_nms: method must be one of \"linear\", \"gaussian\", \"naive\", got \"", s, "\""));
}

// Arithmetic follows mmcv's CPU kernel (mmcv/ops/csrc/pytorch/cpu/nms.cpp, softnms_cpu, offset
// 0) evaluated in T: IoU = inter / (area_sel + area_other - inter), thresholds and sigma cast to
// T. Differences: a pair with no intersection has IoU 0 (mmcv: 0/0 = NaN for two zero-area
// boxes), ties between equal current scores go to the lowest input index (mmcv: the first in
// its internally swapped order), and boxes whose input score is below min_score are dropped up
// front (mmcv emits such a box when it is the very first maximum, issue 1726).
template <typename T>
SoftNmsResult<T> soft_nms(const T* boxes, const T* scores, size_t n, const SoftNmsOptions& opts) {
  SETDET_CHECK(opts.iou_threshold >= 0.0 && opts.iou_threshold <= 1.0,
               "soft_nms: iou_threshold must be in [0, 1], got ", opts.iou_threshold);
  SETDET_CHECK(std::isfinite(opts.sigma) && opts.sigma > 0.0,
               "soft_nms: sigma must be a finite number > 0, got ", opts.sigma);
  SETDET_CHECK(std::isfinite(opts.min_score), "soft_nms: min_score must be finite, got ",
               opts.min_score);
  SETDET_CHECK(opts.max_output >= -1, "soft_nms: max_output must be -1 (all) or >= 0, got ",
               opts.max_output);
  SoftNmsResult<T> result;
  if (n == 0) return result;
  SETDET_CHECK(boxes != nullptr && scores != nullptr,
               "soft_nms: boxes and scores must not be null for n = ", n);
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) {
      SETDET_CHECK(std::isfinite(boxes[4 * i + k]), "soft_nms: boxes[", i,
                   "] has a non-finite coordinate (", boxes[4 * i + k], ")");
    }
    SETDET_CHECK(std::isfinite(scores[i]), "soft_nms: scores[", i, "] is not finite (", scores[i],
                 ")");
  }
  const T thr = static_cast<T>(opts.iou_threshold);
  const T sigma = static_cast<T>(opts.sigma);
  const T min_score = static_cast<T>(opts.min_score);

  // Live boxes, structure of arrays, kept in input order so that the first maximum found is the
  // lowest index.
  std::vector<int64_t> idx;
  std::vector<T> x1, y1, x2, y2, area, sc;
  for (size_t i = 0; i < n; ++i) {
    if (scores[i] < min_score) continue;
    const T* b = boxes + 4 * i;
    idx.push_back(static_cast<int64_t>(i));
    x1.push_back(b[0]), y1.push_back(b[1]), x2.push_back(b[2]), y2.push_back(b[3]);
    area.push_back((b[2] - b[0]) * (b[3] - b[1]));
    sc.push_back(scores[i]);
  }
  size_t live = idx.size();
  while (live > 0) {
    if (opts.max_output >= 0 && static_cast<int64_t>(result.indices.size()) >= opts.max_output) {
      break;
    }
    size_t best = 0;
    for (size_t p = 1; p < live; ++p) {
      if (sc[p] > sc[best]) best = p;
    }
    result.indices.push_back(idx[best]);
    result.scores.push_back(sc[best]);
    const T bx1 = x1[best], by1 = y1[best], bx2 = x2[best], by2 = y2[best], barea = area[best];
    size_t out = 0;
    for (size_t p = 0; p < live; ++p) {
      if (p == best) continue;
      T s = sc[p];
      const T w = std::max(T(0), std::min(bx2, x2[p]) - std::max(bx1, x1[p]));
      const T h = std::max(T(0), std::min(by2, y2[p]) - std::max(by1, y1[p]));
      const T inter = w * h;
      if (inter > T(0)) {
        const T ovr = inter / (barea + area[p] - inter);
        switch (opts.method) {
          case SoftNmsMethod::kNaive:
            if (ovr >= thr) s = T(0);
            break;
          case SoftNmsMethod::kLinear:
            if (ovr >= thr) s *= T(1) - ovr;
            break;
          case SoftNmsMethod::kGaussian:
            s *= std::exp(-(ovr * ovr) / sigma);
            break;
        }
      } else if (opts.method != SoftNmsMethod::kGaussian && thr == T(0)) {
        // IoU 0 >= threshold 0: mmcv applies the factor 1 - 0 (linear) or 0 (naive).
        if (opts.method == SoftNmsMethod::kNaive) s = T(0);
      }
      if (s < min_score) continue;
      idx[out] = idx[p], x1[out] = x1[p], y1[out] = y1[p], x2[out] = x2[p], y2[out] = y2[p];
      area[out] = area[p], sc[out] = s;
      ++out;
    }
    live = out;
  }
  return result;
}

template SoftNmsResult<float> soft_nms<float>(const float*, const float*, size_t,
                                              const SoftNmsOptions&);
template SoftNmsResult<double> soft_nms<double>(const double*, const double*, size_t,
                                                const SoftNmsOptions&);

}  // namespace setdet
