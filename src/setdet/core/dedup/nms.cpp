#include "setdet/core/dedup/nms.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>

#include "setdet/core/error.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

// Below this many candidates every candidate is tested against the list of kept boxes; above
// it a multi-level grid over the kept boxes limits the tests to boxes that can overlap.
constexpr size_t kGridMinCandidates = 192;
// Grid cell size relative to the longest side a level holds.
constexpr double kCellScale = 0.5;

template <typename T>
void check_nms_inputs(const char* fn, const T* boxes, const T* scores, size_t n,
                      const NmsOptions& opts) {
  SETDET_CHECK(opts.iou_threshold >= 0.0 && opts.iou_threshold <= 1.0, fn,
               ": iou_threshold must be in [0, 1], got ", opts.iou_threshold);
  SETDET_CHECK(!std::isnan(opts.score_threshold), fn, ": score_threshold must be a number, got ",
               opts.score_threshold);
  SETDET_CHECK(opts.pre_nms_top_k >= -1, fn, ": pre_nms_top_k must be -1 (all) or >= 0, got ",
               opts.pre_nms_top_k);
  SETDET_CHECK(opts.max_output >= -1, fn, ": max_output must be -1 (all) or >= 0, got ",
               opts.max_output);
  if (n == 0) return;
  SETDET_CHECK(boxes != nullptr && scores != nullptr, fn,
               ": boxes and scores must not be null for n = ", n);
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) {
      SETDET_CHECK(std::isfinite(boxes[4 * i + k]), fn, ": boxes[", i,
                   "] has a non-finite coordinate (", boxes[4 * i + k], ")");
    }
    SETDET_CHECK(std::isfinite(scores[i]), fn, ": scores[", i, "] is not finite (", scores[i], ")");
  }
}

// Processing order: score descending, ties by input index ascending (the order of a stable
// descending sort, as torchvision.ops.nms). `order` receives the indices of the scores above
// `thr`, sorted, cut to the first `top_k` (-1: all).
template <typename T>
void sort_candidates(const T* scores, size_t n, T thr, int64_t top_k, std::vector<int64_t>* order) {
  struct ScoredIndex {
    T score;
    int64_t index;
  };
  auto before = [](const ScoredIndex& a, const ScoredIndex& b) {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
  };
  std::vector<ScoredIndex> c;
  c.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (scores[i] > thr) c.push_back({scores[i], static_cast<int64_t>(i)});
  }
  if (top_k >= 0 && static_cast<size_t>(top_k) < c.size()) {
    std::nth_element(c.begin(), c.begin() + top_k, c.end(), before);
    c.resize(static_cast<size_t>(top_k));
  }
  std::sort(c.begin(), c.end(), before);
  order->resize(c.size());
  for (size_t i = 0; i < c.size(); ++i) (*order)[i] = c[i].index;
}

// float scores: the same order from one 64-bit key per candidate, (descending score bits << 32)
// | index, sorted by a radix sort.
inline uint64_t float_order_key(float score, uint32_t index) {
  if (score == 0.0f) score = 0.0f;  // -0 ties with +0, as in a comparison sort
  uint32_t u;
  std::memcpy(&u, &score, sizeof(u));
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | index;
}

void radix_sort(std::vector<uint64_t>* keys) {
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  std::vector<uint64_t> tmp(keys->size());
  std::vector<size_t> count(kBuckets);
  for (int shift = 0; shift < 64; shift += kBits) {
    std::fill(count.begin(), count.end(), 0);
    for (const uint64_t k : *keys) count[(k >> shift) & (kBuckets - 1)]++;
    if (count[((*keys)[0] >> shift) & (kBuckets - 1)] == keys->size()) continue;  // one digit
    size_t sum = 0;
    for (auto& c : count) sum += c, c = sum - c;
    for (const uint64_t k : *keys) tmp[count[(k >> shift) & (kBuckets - 1)]++] = k;
    keys->swap(tmp);
  }
}

template <>
void sort_candidates<float>(const float* scores, size_t n, float thr, int64_t top_k,
                            std::vector<int64_t>* order) {
  if (n > UINT32_MAX) {
    // indices do not fit the packed key
    std::vector<double> wide(scores, scores + n);
    sort_candidates<double>(wide.data(), n, thr, top_k, order);
    return;
  }
  std::vector<uint64_t> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (scores[i] > thr) keys.push_back(float_order_key(scores[i], static_cast<uint32_t>(i)));
  }
  if (top_k >= 0 && static_cast<size_t>(top_k) < keys.size()) {
    std::nth_element(keys.begin(), keys.begin() + top_k, keys.end());
    keys.resize(static_cast<size_t>(top_k));
  }
  if (keys.size() < 1024) {
    std::sort(keys.begin(), keys.end());
  } else {
    radix_sort(&keys);
  }
  order->resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i)
    (*order)[i] = static_cast<int64_t>(keys[i] & 0xffffffffu);
}

// For a T-valued IoU v: (double)v > thr exactly when v > threshold_in_t(thr), the largest T not
// above thr.
template <typename T>
T threshold_in_t(double thr) {
  T t = static_cast<T>(thr);
  if (static_cast<double>(t) > thr) t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}

// Greedy suppression over candidates already in processing order. IoU is evaluated with the
// same floating-point expression as torchvision's CPU kernel (areas (x2-x1)*(y2-y1), inter
// w*h, inter / (area_kept + area_candidate - inter)) and an equivalent comparison with the
// threshold (see threshold_in_t), so the decisions agree bit for bit. A box with zero or negative
// width or height never suppresses and is never suppressed (torchvision: 0 or NaN IoU there).
template <typename T>
class GreedyNms {
 public:
  void run(const T* boxes, const int64_t* cand, size_t m, double thr, int64_t max_output,
           std::vector<int64_t>* keep) {
    keep->clear();
    if (m == 0 || max_output == 0) return;
    thr_ = thr;
    thr_t_ = threshold_in_t<T>(thr);
    gather(boxes, cand, m);
    if (m < kGridMinCandidates || m > static_cast<size_t>(INT32_MAX)) {
      run_list(cand, m, max_output, keep);
    } else {
      run_grid(cand, m, max_output, keep);
    }
  }

 private:
  // Kept boxes live in blocks of kBlock (structure of arrays), chained per grid cell (or one
  // chain in list mode). Unused slots hold a box that overlaps nothing (inter 0, union > 0).
  static constexpr int kBlock = 8;
  struct KeptBlock {
    T x1[kBlock], y1[kBlock], x2[kBlock], y2[kBlock], area[kBlock];
    int32_t next;
    int32_t count;
  };

  // Branch-free over a block so that it vectorises; c indexes the candidates.
  bool block_suppresses(const KeptBlock& k, size_t c) const {
    const T cx1 = x1_[c], cy1 = y1_[c], cx2 = x2_[c], cy2 = y2_[c], carea = area_[c];
    int hits = 0;
    for (int j = 0; j < kBlock; ++j) {
      const T w = std::max(T(0), std::min(k.x2[j], cx2) - std::max(k.x1[j], cx1));
      const T h = std::max(T(0), std::min(k.y2[j], cy2) - std::max(k.y1[j], cy1));
      const T inter = w * h;
      const T ovr = inter / (k.area[j] + carea - inter);
      hits |= ovr > thr_t_;
    }
    return hits != 0;
  }

  bool chain_suppresses(int32_t head, size_t c) const {
    for (int32_t b = head; b >= 0; b = blocks_[static_cast<size_t>(b)].next) {
      if (block_suppresses(blocks_[static_cast<size_t>(b)], c)) return true;
    }
    return false;
  }

  void insert_kept(int32_t* head, size_t c) {
    if (*head < 0 || blocks_[static_cast<size_t>(*head)].count == kBlock) {
      KeptBlock blk;
      std::fill(blk.x1, blk.x1 + kBlock, T(1)), std::fill(blk.y1, blk.y1 + kBlock, T(1));
      std::fill(blk.x2, blk.x2 + kBlock, T(0)), std::fill(blk.y2, blk.y2 + kBlock, T(0));
      std::fill(blk.area, blk.area + kBlock, T(1));
      blk.next = *head;
      blk.count = 0;
      *head = static_cast<int32_t>(blocks_.size());
      blocks_.push_back(blk);
    }
    KeptBlock& blk = blocks_[static_cast<size_t>(*head)];
    const int j = blk.count++;
    blk.x1[j] = x1_[c], blk.y1[j] = y1_[c], blk.x2[j] = x2_[c], blk.y2[j] = y2_[c];
    blk.area[j] = area_[c];
  }

  void gather(const T* boxes, const int64_t* cand, size_t m) {
    x1_.resize(m), y1_.resize(m), x2_.resize(m), y2_.resize(m), area_.resize(m);
    valid_.resize(m);
    blocks_.clear();
    for (size_t k = 0; k < m; ++k) {
      const T* b = boxes + 4 * cand[k];
      x1_[k] = b[0], y1_[k] = b[1], x2_[k] = b[2], y2_[k] = b[3];
      area_[k] = (b[2] - b[0]) * (b[3] - b[1]);
      valid_[k] = b[2] > b[0] && b[3] > b[1];
    }
  }

  void run_list(const int64_t* cand, size_t m, int64_t max_output, std::vector<int64_t>* keep) {
    int32_t head = -1;
    for (size_t c = 0; c < m; ++c) {
      if (valid_[c] && chain_suppresses(head, c)) continue;
      keep->push_back(cand[c]);
      if (valid_[c]) insert_kept(&head, c);
      if (max_output > 0 && static_cast<int64_t>(keep->size()) >= max_output) return;
    }
  }

  // Level l holds boxes whose longer side is <= side (side_0 * 2^l); a kept box is linked into
  // the cell (at least `side` wide) of its (x1, y1) corner, so a candidate visits only the cells
  // whose corners can belong to a box overlapping it enough.
  struct Level {
    double side = 0, cell = 0;
    int64_t gx = 1, gy = 1, offset = 0, candidates = 0, kept = 0;
    double min_area = 0, max_area = 0, max_w = 0, max_h = 0;  // of the kept boxes
  };

  int64_t cell_x(const Level& lv, double x) const {
    const double f = std::floor((x - min_x_) / lv.cell);
    if (!(f > 0)) return 0;
    return f >= static_cast<double>(lv.gx - 1) ? lv.gx - 1 : static_cast<int64_t>(f);
  }
  int64_t cell_y(const Level& lv, double y) const {
    const double f = std::floor((y - min_y_) / lv.cell);
    if (!(f > 0)) return 0;
    return f >= static_cast<double>(lv.gy - 1) ? lv.gy - 1 : static_cast<int64_t>(f);
  }

  void build_levels(size_t m) {
    double min_side = 0, max_side = 0, max_x = 0, max_y = 0;
    bool any = false;
    for (size_t k = 0; k < m; ++k) {
      if (!valid_[k]) continue;
      const double s = std::max(static_cast<double>(x2_[k]) - static_cast<double>(x1_[k]),
                                static_cast<double>(y2_[k]) - static_cast<double>(y1_[k]));
      if (!any) {
        min_side = max_side = s;
        min_x_ = x1_[k], min_y_ = y1_[k], max_x = x2_[k], max_y = y2_[k];
        any = true;
      } else {
        min_side = std::min(min_side, s), max_side = std::max(max_side, s);
        min_x_ = std::min<double>(min_x_, x1_[k]), min_y_ = std::min<double>(min_y_, y1_[k]);
        max_x = std::max<double>(max_x, x2_[k]), max_y = std::max<double>(max_y, y2_[k]);
      }
    }
    levels_.clear();
    if (!any) return;
    const double base = std::max(min_side, std::ldexp(max_side, -20));
    int num_levels = 1;
    while (std::ldexp(base, num_levels - 1) < max_side) ++num_levels;
    levels_.resize(static_cast<size_t>(num_levels));
    for (int l = 0; l < num_levels; ++l) levels_[static_cast<size_t>(l)].side = std::ldexp(base, l);
    level_of_.assign(m, 0);
    for (size_t k = 0; k < m; ++k) {
      if (!valid_[k]) continue;
      const double s = std::max(static_cast<double>(x2_[k]) - static_cast<double>(x1_[k]),
                                static_cast<double>(y2_[k]) - static_cast<double>(y1_[k]));
      int l = std::max(0, std::ilogb(s / base) - 1);
      while (levels_[static_cast<size_t>(l)].side < s) ++l;
      level_of_[k] = static_cast<uint8_t>(l);
      levels_[static_cast<size_t>(l)].candidates++;
    }
    const double ex = max_x - min_x_, ey = max_y - min_y_;
    int64_t total = 0;
    for (auto& lv : levels_) {
      lv.cell = lv.side * kCellScale;
      if (lv.candidates == 0) {
        lv.gx = lv.gy = 1;
      } else {
        const double budget = std::max<double>(16, 2.0 * static_cast<double>(lv.candidates));
        while ((std::floor(ex / lv.cell) + 1) * (std::floor(ey / lv.cell) + 1) > budget) {
          lv.cell *= 2;
        }
        lv.gx = static_cast<int64_t>(std::floor(ex / lv.cell)) + 1;
        lv.gy = static_cast<int64_t>(std::floor(ey / lv.cell)) + 1;
      }
      lv.offset = total;
      total += lv.gx * lv.gy;
    }
    head_.assign(static_cast<size_t>(total), -1);
  }

  // IoU > t implies overlap widths ow > t * max(wQ, wB) and heights likewise, hence for a kept
  // box B no wider than W: B.x1 in (max(Q.x1 + t wQ - W, Q.x1 - (1 - t) W), Q.x2 - t wQ); and
  // IoU <= min(A, B) / max(A, B). t is shrunk by 1e-5 and the ranges widened to cover the
  // rounding of the float IoU and of these bounds. The candidate's own level goes first: its
  // suppressor, if any, is most likely there.
  bool grid_suppressed(size_t c) const {
    const size_t own = level_of_[c];
    if (level_suppresses(levels_[own], c)) return true;
    for (size_t l = 0; l < levels_.size(); ++l) {
      if (l != own && level_suppresses(levels_[l], c)) return true;
    }
    return false;
  }

  bool level_suppresses(const Level& lv, size_t c) const {
    if (lv.kept == 0) return false;
    const double qx1 = x1_[c], qy1 = y1_[c], qx2 = x2_[c], qy2 = y2_[c];
    const double qarea = static_cast<double>(area_[c]);
    const double t = thr_ * (1 - 1e-5);
    if (lv.max_area < t * qarea || qarea < t * lv.min_area) return false;
    const double qw = qx2 - qx1, qh = qy2 - qy1;
    const double ex = 1e-9 * (std::fabs(qx1) + std::fabs(qx2) + lv.max_w);
    const double ey = 1e-9 * (std::fabs(qy1) + std::fabs(qy2) + lv.max_h);
    const int64_t ix0 =
        cell_x(lv, std::max(qx1 + t * qw - lv.max_w, qx1 - (1 - t) * lv.max_w) - ex);
    const int64_t ix1 = cell_x(lv, qx2 - t * qw + ex);
    const int64_t iy0 =
        cell_y(lv, std::max(qy1 + t * qh - lv.max_h, qy1 - (1 - t) * lv.max_h) - ey);
    const int64_t iy1 = cell_y(lv, qy2 - t * qh + ey);
    for (int64_t iy = iy0; iy <= iy1; ++iy) {
      const int32_t* row = head_.data() + lv.offset + iy * lv.gx;
      for (int64_t ix = ix0; ix <= ix1; ++ix) {
        if (chain_suppresses(row[ix], c)) return true;
      }
    }
    return false;
  }

  void run_grid(const int64_t* cand, size_t m, int64_t max_output, std::vector<int64_t>* keep) {
    build_levels(m);
    for (size_t c = 0; c < m; ++c) {
      if (valid_[c]) {
        if (grid_suppressed(c)) continue;
        Level& lv = levels_[level_of_[c]];
        const size_t cell =
            static_cast<size_t>(lv.offset + cell_y(lv, y1_[c]) * lv.gx + cell_x(lv, x1_[c]));
        insert_kept(&head_[cell], c);
        const double a = static_cast<double>(area_[c]);
        const double w = static_cast<double>(x2_[c]) - static_cast<double>(x1_[c]);
        const double h = static_cast<double>(y2_[c]) - static_cast<double>(y1_[c]);
        lv.min_area = lv.kept == 0 ? a : std::min(lv.min_area, a);
        lv.max_area = lv.kept == 0 ? a : std::max(lv.max_area, a);
        lv.max_w = lv.kept == 0 ? w : std::max(lv.max_w, w);
        lv.max_h = lv.kept == 0 ? h : std::max(lv.max_h, h);
        lv.kept++;
      }
      keep->push_back(cand[c]);
      if (max_output > 0 && static_cast<int64_t>(keep->size()) >= max_output) return;
    }
  }

  double thr_ = 0;
  T thr_t_ = 0;
  std::vector<T> x1_, y1_, x2_, y2_, area_;
  std::vector<uint8_t> valid_;
  std::vector<KeptBlock> blocks_;
  std::vector<Level> levels_;
  std::vector<uint8_t> level_of_;
  std::vector<int32_t> head_;
  double min_x_ = 0, min_y_ = 0;
};

}  // namespace

template <typename T>
std::vector<int64_t> nms(const T* boxes, const T* scores, size_t n, const NmsOptions& opts) {
  check_nms_inputs("nms", boxes, scores, n, opts);
  std::vector<int64_t> order, keep;
  sort_candidates(scores, n, static_cast<T>(opts.score_threshold), opts.pre_nms_top_k, &order);
  GreedyNms<T>().run(boxes, order.data(), order.size(), opts.iou_threshold, opts.max_output, &keep);
  return keep;
}

template <typename T>
std::vector<int64_t> batched_nms(const T* boxes, const T* scores, const int64_t* idxs, size_t n,
                                 const NmsOptions& opts) {
  check_nms_inputs("batched_nms", boxes, scores, n, opts);
  if (n == 0) return {};
  SETDET_CHECK(idxs != nullptr, "batched_nms: idxs must not be null for n = ", n);
  // One global processing order, then a stable counting sort by class: each class's candidates
  // stay in processing order, and the kept boxes of all classes come out in that order too.
  std::vector<int64_t> order;
  sort_candidates(scores, n, static_cast<T>(opts.score_threshold), -1, &order);
  const size_t m = order.size();
  std::vector<uint32_t> class_of(m);
  size_t num_classes = 0;
  {
    int64_t lo = 0, hi = 0;
    for (size_t r = 0; r < m; ++r) {
      const int64_t l = idxs[order[r]];
      lo = r == 0 ? l : std::min(lo, l), hi = r == 0 ? l : std::max(hi, l);
    }
    const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
    if (m > 0 && span < 4 * static_cast<uint64_t>(m) + 1024) {
      std::vector<int64_t> dense(span + 1, -1);
      for (size_t r = 0; r < m; ++r) {
        int64_t& d = dense[static_cast<uint64_t>(idxs[order[r]]) - static_cast<uint64_t>(lo)];
        if (d < 0) d = static_cast<int64_t>(num_classes++);
        class_of[r] = static_cast<uint32_t>(d);
      }
    } else {
      std::unordered_map<int64_t, uint32_t> dense;
      for (size_t r = 0; r < m; ++r) {
        auto it = dense.emplace(idxs[order[r]], static_cast<uint32_t>(num_classes)).first;
        if (it->second == num_classes) ++num_classes;
        class_of[r] = it->second;
      }
    }
  }
  std::vector<size_t> start(num_classes + 1, 0);
  for (size_t r = 0; r < m; ++r) start[class_of[r] + 1]++;
  for (size_t c = 0; c < num_classes; ++c) start[c + 1] += start[c];
  std::vector<int64_t> grouped(m);
  {
    std::vector<size_t> fill(start.begin(), start.end() - 1);
    for (size_t r = 0; r < m; ++r) grouped[fill[class_of[r]]++] = order[r];
  }
  std::vector<uint8_t> kept(n, 0);
  // Classes are independent and each writes only its own boxes' flags; threads take classes in
  // turn, so the result does not depend on the thread count.
  std::atomic<size_t> next_class{0};
  const int64_t workers = std::min<int64_t>(num_threads(), static_cast<int64_t>(num_classes));
  parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    GreedyNms<T> runner;
    std::vector<int64_t> keep;
    for (size_t c = next_class++; c < num_classes; c = next_class++) {
      size_t size = start[c + 1] - start[c];
      if (opts.pre_nms_top_k >= 0) size = std::min(size, static_cast<size_t>(opts.pre_nms_top_k));
      runner.run(boxes, grouped.data() + start[c], size, opts.iou_threshold, opts.max_output,
                 &keep);
      for (const int64_t i : keep) kept[static_cast<size_t>(i)] = 1;
    }
  });
  std::vector<int64_t> keep;
  for (const int64_t i : order) {
    if (kept[static_cast<size_t>(i)]) keep.push_back(i);
  }
  return keep;
}

template std::vector<int64_t> nms<float>(const float*, const float*, size_t, const NmsOptions&);
template std::vector<int64_t> nms<double>(const double*, const double*, size_t, const NmsOptions&);
template std::vector<int64_t> batched_nms<float>(const float*, const float*, const int64_t*, size_t,
                                                 const NmsOptions&);
template std::vector<int64_t> batched_nms<double>(const double*, const double*, const int64_t*,
                                                  size_t, const NmsOptions&);

}  // namespace setdet
