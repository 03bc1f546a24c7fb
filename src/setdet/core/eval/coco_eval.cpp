// COCOeval (pycocotools cocoeval.py, iouType 'bbox') reproduced operation for operation; the
// numbered items refer to shared/reference/coco_eval.md.
//
// Layout: ground truth and detections are grouped by (image, category) into contiguous index
// arrays; each block is evaluated once (IoU matrix, then the greedy match per area range and IoU
// threshold) in parallel; the per-detection outcomes are stored category-major so that a
// category's detections are one contiguous run in image order, which accumulate() sorts once
// and reuses for every area range, maxDets and IoU threshold.
#include "setdet/core/eval/coco_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "setdet/core/error.h"
#include "setdet/core/eval/numpy_sum.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

// np.spacing(1): the precision denominator's eps (item 9).
constexpr double kEps = 2.220446049250313e-16;

// Per (detection, area range, IoU threshold) outcome.
enum Outcome : uint8_t { kFalsePositive = 0, kTruePositive = 1, kIgnored = 2 };

std::string format_fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Checks the parameters and fills image / category ids the way COCOeval.evaluate() does.
CocoEvalParams resolve_params(const CocoDataset& gt, const CocoEvalParams& in) {
  CocoEvalParams p = in;
  SETDET_CHECK(!p.iou_thresholds.empty(), "COCO eval: iou_thresholds is empty");
  for (double t : p.iou_thresholds) {
    SETDET_CHECK(std::isfinite(t), "COCO eval: iou_thresholds must be finite, got ", t);
  }
  SETDET_CHECK(!p.recall_thresholds.empty(), "COCO eval: recall_thresholds is empty");
  for (double r : p.recall_thresholds) {
    SETDET_CHECK(std::isfinite(r), "COCO eval: recall_thresholds must be finite, got ", r);
  }
  SETDET_CHECK(!p.max_dets.empty(), "COCO eval: max_dets is empty");
  std::sort(p.max_dets.begin(), p.max_dets.end());  // pycocotools: p.maxDets = sorted(p.maxDets)
  for (size_t i = 0; i < p.max_dets.size(); ++i) {
    SETDET_CHECK(p.max_dets[i] >= 1, "COCO eval: max_dets must be >= 1, got ", p.max_dets[i]);
    SETDET_CHECK(i == 0 || p.max_dets[i] != p.max_dets[i - 1], "COCO eval: max_dets lists ",
                 p.max_dets[i], " twice");
  }
  SETDET_CHECK(!p.area_ranges.empty(), "COCO eval: area_ranges is empty");
  SETDET_CHECK(p.area_labels.size() == p.area_ranges.size(), "COCO eval: ", p.area_ranges.size(),
               " area_ranges but ", p.area_labels.size(), " area_labels");
  for (size_t i = 0; i < p.area_ranges.size(); ++i) {
    SETDET_CHECK(!std::isnan(p.area_ranges[i][0]) && !std::isnan(p.area_ranges[i][1]),
                 "COCO eval: area_ranges[", i, "] contains NaN");
    for (size_t j = 0; j < i; ++j) {
      SETDET_CHECK(p.area_labels[i] != p.area_labels[j], "COCO eval: area label '",
                   p.area_labels[i], "' is used twice");
    }
  }

  std::unordered_set<int64_t> gt_images, gt_cats;
  gt_images.reserve(gt.images.size());
  for (const CocoImage& img : gt.images) gt_images.insert(img.id);
  for (const CocoCategory& cat : gt.categories) gt_cats.insert(cat.id);
  const std::string gt_name = gt.path.empty() ? std::string("<memory>") : gt.path;

  if (p.image_ids.empty()) {
    for (const CocoImage& img : gt.images) p.image_ids.push_back(img.id);
  } else {
    for (int64_t id : p.image_ids) {
      SETDET_CHECK(gt_images.count(id), "COCO eval: image_ids: image ", id,
                   " is not in the ground truth ", gt_name);
    }
  }
  // np.unique(p.imgIds)
  std::sort(p.image_ids.begin(), p.image_ids.end());
  p.image_ids.erase(std::unique(p.image_ids.begin(), p.image_ids.end()), p.image_ids.end());

  if (p.category_ids.empty()) {
    for (const CocoCategory& cat : gt.categories) p.category_ids.push_back(cat.id);
    std::sort(p.category_ids.begin(), p.category_ids.end());  // sorted(cocoGt.getCatIds())
  } else {
    for (int64_t id : p.category_ids) {
      SETDET_CHECK(gt_cats.count(id), "COCO eval: category_ids: category ", id,
                   " is not in the ground truth ", gt_name);
    }
  }
  if (p.use_cats) {
    // np.unique(p.catIds); with useCats = 0 pycocotools keeps the given order, which decides
    // the order in which the pooled ground truth and detections are concatenated.
    std::sort(p.category_ids.begin(), p.category_ids.end());
    p.category_ids.erase(std::unique(p.category_ids.begin(), p.category_ids.end()),
                         p.category_ids.end());
  } else {
    std::unordered_set<int64_t> seen;
    for (int64_t id : p.category_ids) {
      SETDET_CHECK(seen.insert(id).second, "COCO eval: category_ids lists ", id, " twice");
    }
  }
  return p;
}

// Items grouped by image position, and inside an image by category position, each group in
// input order: the order of pycocotools' _gts / _dts lists (and of their concatenation over
// catIds when useCats = 0).
struct Grouping {
  std::vector<uint32_t> image_begin;  // [I + 1] offsets into order
  std::vector<uint32_t> order;        // item indices
  std::vector<uint32_t> cat;          // category position of order[i]
};

Grouping group_items(size_t num_images, const std::vector<int32_t>& image_pos,
                     const std::vector<int32_t>& cat_pos) {
  Grouping g;
  g.image_begin.assign(num_images + 1, 0);
  for (size_t i = 0; i < image_pos.size(); ++i) {
    if (image_pos[i] >= 0 && cat_pos[i] >= 0)
      ++g.image_begin[static_cast<size_t>(image_pos[i]) + 1];
  }
  for (size_t i = 0; i < num_images; ++i) g.image_begin[i + 1] += g.image_begin[i];
  g.order.resize(g.image_begin[num_images]);
  std::vector<uint32_t> fill(g.image_begin.begin(), g.image_begin.end() - 1);
  for (size_t i = 0; i < image_pos.size(); ++i) {
    if (image_pos[i] >= 0 && cat_pos[i] >= 0) {
      g.order[fill[static_cast<size_t>(image_pos[i])]++] = static_cast<uint32_t>(i);
    }
  }
  for (size_t im = 0; im < num_images; ++im) {
    auto b = g.order.begin() + g.image_begin[im];
    auto e = g.order.begin() + g.image_begin[im + 1];
    if (e - b > 1) {
      std::stable_sort(b, e, [&](uint32_t x, uint32_t y) { return cat_pos[x] < cat_pos[y]; });
    }
  }
  g.cat.resize(g.order.size());
  for (size_t i = 0; i < g.order.size(); ++i) g.cat[i] = static_cast<uint32_t>(cat_pos[g.order[i]]);
  return g;
}

// One evaluated (image, category) pair: pycocotools' evalImgs entry for every area range.
struct Block {
  uint32_t image = 0, k = 0;
  uint32_t gt_begin = 0, gt_end = 0;  // into gt grouping order
  uint32_t dt_begin = 0, dt_end = 0;  // into dt grouping order
  uint32_t kept_begin = 0;            // into the kept-detection arrays
  uint32_t kept = 0;                  // min(#detections, maxDets[-1])
};

// Stat i of pycocotools' _summarizeDets(): (ap, iouThr or -1 for all, area label, maxDets).
struct SummarySpec {
  bool ap;
  double iou;
  const char* area;
  int64_t max_dets;
};

std::array<SummarySpec, 12> summary_specs(const CocoEvalParams& p) {
  // pycocotools indexes maxDets[0..2]; with fewer than 3 values it raises IndexError, here the
  // last value is used instead.
  auto md = [&](size_t i) { return p.max_dets[std::min(i, p.max_dets.size() - 1)]; };
  return {{{true, -1.0, "all", 100},
           {true, 0.5, "all", md(2)},
           {true, 0.75, "all", md(2)},
           {true, -1.0, "small", md(2)},
           {true, -1.0, "medium", md(2)},
           {true, -1.0, "large", md(2)},
           {false, -1.0, "all", md(0)},
           {false, -1.0, "all", md(1)},
           {false, -1.0, "all", md(2)},
           {false, -1.0, "small", md(2)},
           {false, -1.0, "medium", md(2)},
           {false, -1.0, "large", md(2)}}};
}

// _summarize(): mean of the selected entries > -1 (C order t, r, k for precision; t, k for
// recall), -1 when there are none.
double summarize_one(const CocoEvalResult& res, const SummarySpec& s) {
  const CocoEvalParams& p = res.params;
  std::vector<size_t> ts;
  for (size_t t = 0; t < res.num_t; ++t) {
    if (s.iou < 0.0 || p.iou_thresholds[t] == s.iou) ts.push_back(t);
  }
  size_t a = res.num_a, m = res.num_m;
  for (size_t i = 0; i < res.num_a; ++i) {
    if (p.area_labels[i] == s.area) a = i;
  }
  for (size_t i = 0; i < res.num_m; ++i) {
    if (p.max_dets[i] == s.max_dets) m = i;
  }
  if (a == res.num_a || m == res.num_m) return -1.0;
  std::vector<double> vals;
  for (size_t t : ts) {
    if (s.ap) {
      for (size_t r = 0; r < res.num_r; ++r) {
        for (size_t k = 0; k < res.num_k; ++k) {
          const double v = res.precision_at(t, r, k, a, m);
          if (v > -1.0) vals.push_back(v);
        }
      }
    } else {
      for (size_t k = 0; k < res.num_k; ++k) {
        const double v = res.recall_at(t, k, a, m);
        if (v > -1.0) vals.push_back(v);
      }
    }
  }
  return vals.empty() ? -1.0 : numpy_mean(vals);
}

// The (image, category) blocks of one evaluation and where their items sit.
struct BlockLayout {
  Grouping gt, dt;
  std::vector<Block> blocks;              // category-major, image order inside a category
  std::vector<uint32_t> cat_block_begin;  // [K + 1] offsets into blocks
  size_t total_kept = 0;
};

// What evaluateImg leaves for accumulate(), per kept detection (category-major, image order,
// score rank inside an image).
struct BlockOutcomes {
  std::vector<double> score;
  std::vector<uint32_t> rank;    // rank by score inside its (image, category)
  std::vector<uint8_t> outcome;  // [kept][A][T] Outcome
  std::vector<uint32_t> npig;    // [blocks][A] non-ignored ground truth
};

// Maps ids to positions (checking every annotation and detection against the ground truth),
// groups both by (image, category) and lays out the blocks.
BlockLayout build_blocks(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                         const CocoEvalParams& p) {
  const std::string gt_name = gt.path.empty() ? std::string("<memory>") : gt.path;
  const size_t num_images = p.image_ids.size();
  const size_t num_cats = p.category_ids.size();
  const size_t K = p.use_cats ? num_cats : 1;
  const int64_t max_det = p.max_dets.back();
  BlockLayout L;
  // id -> position among the evaluated images / categories, -1 for one outside the subset.
  std::unordered_map<int64_t, int32_t> image_pos_of, cat_pos_of;
  image_pos_of.reserve(gt.images.size());
  for (const CocoImage& img : gt.images) image_pos_of.emplace(img.id, -1);
  for (size_t i = 0; i < num_images; ++i) image_pos_of[p.image_ids[i]] = static_cast<int32_t>(i);
  for (const CocoCategory& cat : gt.categories) cat_pos_of.emplace(cat.id, -1);
  for (size_t i = 0; i < num_cats; ++i) cat_pos_of[p.category_ids[i]] = static_cast<int32_t>(i);

  std::vector<int32_t> gt_image(gt.annotations.size()), gt_cat(gt.annotations.size());
  int64_t zero_id_annotation = -1;
  for (size_t i = 0; i < gt.annotations.size(); ++i) {
    const CocoAnnotation& a = gt.annotations[i];
    const auto im = image_pos_of.find(a.image_id);
    SETDET_CHECK(im != image_pos_of.end(), gt_name, ": annotations[", i, "].image_id: image ",
                 a.image_id, " is not in \"images\"");
    const auto ct = cat_pos_of.find(a.category_id);
    SETDET_CHECK(ct != cat_pos_of.end(), gt_name, ": annotations[", i, "].category_id: category ",
                 a.category_id, " is not in \"categories\"");
    SETDET_CHECK(std::isfinite(a.area) && std::isfinite(a.bbox[0]) && std::isfinite(a.bbox[1]) &&
                     std::isfinite(a.bbox[2]) && std::isfinite(a.bbox[3]),
                 gt_name, ": annotations[", i, "]: bbox and area must be finite");
    gt_image[i] = im->second;
    gt_cat[i] = ct->second;
    if (a.id == 0 && !a.iscrowd && im->second >= 0 && ct->second >= 0) {
      zero_id_annotation = static_cast<int64_t>(i);
    }
  }
  std::vector<int32_t> dt_image(dets.size()), dt_cat(dets.size());
  for (size_t i = 0; i < dets.size(); ++i) {
    const CocoDetection& d = dets[i];
    const auto im = image_pos_of.find(d.image_id);
    SETDET_CHECK(im != image_pos_of.end(), "COCO eval: detection ", i, ": image ", d.image_id,
                 " is not in the ground truth ", gt_name,
                 " (pycocotools: Results do not correspond to current coco set)");
    const auto ct = cat_pos_of.find(d.category_id);
    SETDET_CHECK(ct != cat_pos_of.end(), "COCO eval: detection ", i, ": category ", d.category_id,
                 " is not in the ground truth ", gt_name);
    SETDET_CHECK(std::isfinite(d.score) && std::isfinite(d.bbox[0]) && std::isfinite(d.bbox[1]) &&
                     std::isfinite(d.bbox[2]) && std::isfinite(d.bbox[3]),
                 "COCO eval: detection ", i, ": bbox and score must be finite");
    dt_image[i] = im->second;
    dt_cat[i] = ct->second;
  }
  if (zero_id_annotation >= 0) {
    std::fprintf(stderr,
                 "setdet: warning: %s: annotations[%lld] has id 0; as in pycocotools, a detection "
                 "matched to it counts as a false positive (the match is stored as the id and 0 "
                 "means unmatched)\n",
                 gt_name.c_str(), static_cast<long long>(zero_id_annotation));
  }

  L.gt = group_items(num_images, gt_image, gt_cat);
  L.dt = group_items(num_images, dt_image, dt_cat);
  const Grouping& gg = L.gt;
  const Grouping& dg = L.dt;
  gt_image = {};
  gt_cat = {};
  dt_image = {};
  dt_cat = {};

  // Blocks in (image, category) order, the (image, category) pairs with ground truth or
  // detections (evaluateImg returns None for the others).
  std::vector<Block>& blocks = L.blocks;
  for (size_t im = 0; im < num_images; ++im) {
    uint32_t gi = gg.image_begin[im], ge = gg.image_begin[im + 1];
    uint32_t di = dg.image_begin[im], de = dg.image_begin[im + 1];
    if (!p.use_cats) {
      if (gi == ge && di == de) continue;
      Block b;
      b.image = static_cast<uint32_t>(im);
      b.gt_begin = gi;
      b.gt_end = ge;
      b.dt_begin = di;
      b.dt_end = de;
      blocks.push_back(b);
      continue;
    }
    while (gi < ge || di < de) {
      const uint32_t k =
          std::min(gi < ge ? gg.cat[gi] : UINT32_MAX, di < de ? dg.cat[di] : UINT32_MAX);
      Block b;
      b.image = static_cast<uint32_t>(im);
      b.k = k;
      b.gt_begin = gi;
      while (gi < ge && gg.cat[gi] == k) ++gi;
      b.gt_end = gi;
      b.dt_begin = di;
      while (di < de && dg.cat[di] == k) ++di;
      b.dt_end = di;
      blocks.push_back(b);
    }
  }
  // Category-major, image order inside a category (stable counting sort by k).
  std::vector<uint32_t>& cat_block_begin = L.cat_block_begin;
  cat_block_begin.assign(K + 1, 0);
  for (const Block& b : blocks) ++cat_block_begin[b.k + 1];
  for (size_t k = 0; k < K; ++k) cat_block_begin[k + 1] += cat_block_begin[k];
  {
    std::vector<Block> sorted(blocks.size());
    std::vector<uint32_t> fill(cat_block_begin.begin(), cat_block_begin.end() - 1);
    for (const Block& b : blocks) sorted[fill[b.k]++] = b;
    blocks.swap(sorted);
  }
  size_t& total_kept = L.total_kept;
  for (Block& b : blocks) {
    b.kept_begin = static_cast<uint32_t>(total_kept);
    b.kept = static_cast<uint32_t>(
        std::min<int64_t>(static_cast<int64_t>(b.dt_end - b.dt_begin), max_det));
    total_kept += b.kept;
  }
  SETDET_CHECK(total_kept < UINT32_MAX, "COCO eval: too many detections (", total_kept, ")");

  return L;
}

// evaluate(): computeIoU + evaluateImg for every block, in parallel.
BlockOutcomes evaluate_blocks(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                              const CocoEvalParams& p, const BlockLayout& L) {
  const size_t T = p.iou_thresholds.size(), A = p.area_ranges.size(), AT = A * T;
  BlockOutcomes O;
  O.score.resize(L.total_kept);
  O.rank.resize(L.total_kept);
  O.outcome.resize(L.total_kept * AT);
  O.npig.resize(L.blocks.size() * A);
  const Grouping& gg = L.gt;
  const Grouping& dg = L.dt;
  const std::vector<Block>& blocks = L.blocks;
  std::vector<double>& kept_score = O.score;
  std::vector<uint32_t>& kept_rank = O.rank;
  std::vector<uint8_t>& outcome = O.outcome;
  std::vector<uint32_t>& block_npig = O.npig;

  std::vector<double> iou_thr(T);
  for (size_t t = 0; t < T; ++t) iou_thr[t] = std::min(p.iou_thresholds[t], 1 - 1e-10);

  parallel_for(0, static_cast<int64_t>(blocks.size()), 32, [&](int64_t bb, int64_t be) {
    std::vector<uint32_t> dt_sorted, gt_idx, gt_ord;
    std::vector<double> ious;
    std::vector<uint8_t> gt_ignore, gt_crowd, gt_matched, dt_outside;
    for (int64_t bi = bb; bi < be; ++bi) {
      const Block& b = blocks[static_cast<size_t>(bi)];
      const size_t G = b.gt_end - b.gt_begin;
      gt_idx.assign(gg.order.begin() + b.gt_begin, gg.order.begin() + b.gt_end);
      dt_sorted.assign(dg.order.begin() + b.dt_begin, dg.order.begin() + b.dt_end);
      // np.argsort(-score, kind='mergesort'), cut to maxDets[-1] (item 5, 6)
      std::stable_sort(dt_sorted.begin(), dt_sorted.end(),
                       [&](uint32_t x, uint32_t y) { return dets[x].score > dets[y].score; });
      const size_t D = b.kept;
      for (size_t j = 0; j < D; ++j) {
        kept_score[b.kept_begin + j] = dets[dt_sorted[j]].score;
        kept_rank[b.kept_begin + j] = static_cast<uint32_t>(j);
      }
      // maskApi.c bbIou in double (items 2, 3): ious[j * G + g]
      ious.assign(D * G, 0.0);
      gt_crowd.resize(G);
      for (size_t g = 0; g < G; ++g) gt_crowd[g] = gt.annotations[gt_idx[g]].iscrowd ? 1 : 0;
      for (size_t g = 0; g < G; ++g) {
        const std::array<double, 4>& gb = gt.annotations[gt_idx[g]].bbox;
        const double ga = gb[2] * gb[3];
        for (size_t j = 0; j < D; ++j) {
          const std::array<double, 4>& db = dets[dt_sorted[j]].bbox;
          const double da = db[2] * db[3];
          const double w = std::fmin(db[2] + db[0], gb[2] + gb[0]) - std::fmax(db[0], gb[0]);
          if (w <= 0) continue;
          const double h = std::fmin(db[3] + db[1], gb[3] + gb[1]) - std::fmax(db[1], gb[1]);
          if (h <= 0) continue;
          const double inter = w * h;
          const double uni = gt_crowd[g] ? da : da + ga - inter;
          ious[j * G + g] = inter / uni;
        }
      }
      dt_outside.resize(D);
      gt_ignore.resize(G);
      gt_ord.resize(G);
      gt_matched.resize(G);
      for (size_t a = 0; a < A; ++a) {
        const double lo = p.area_ranges[a][0], hi = p.area_ranges[a][1];
        // _ignore from iscrowd alone plus the area range on the annotation's area (items 1, 4)
        uint32_t npig = 0;
        for (size_t g = 0; g < G; ++g) {
          const CocoAnnotation& ann = gt.annotations[gt_idx[g]];
          gt_ignore[g] = (ann.iscrowd || ann.area < lo || ann.area > hi) ? 1 : 0;
          if (!gt_ignore[g]) gt_ord[npig++] = static_cast<uint32_t>(g);
        }
        block_npig[static_cast<size_t>(bi) * A + a] = npig;
        // stable argsort of _ignore: regular GT first, then ignored, each in input order
        for (size_t g = 0, n = npig; g < G; ++g) {
          if (gt_ignore[g]) gt_ord[n++] = static_cast<uint32_t>(g);
        }
        for (size_t j = 0; j < D; ++j) {
          const std::array<double, 4>& db = dets[dt_sorted[j]].bbox;
          const double da = db[2] * db[3];  // loadRes: ann['area'] = bb[2] * bb[3]
          dt_outside[j] = (da < lo || da > hi) ? 1 : 0;
        }
        for (size_t t = 0; t < T; ++t) {
          std::fill(gt_matched.begin(), gt_matched.end(), 0);
          for (size_t j = 0; j < D; ++j) {
            // greedy match of item 7
            double best = iou_thr[t];
            int64_t m = -1;
            const double* row = ious.data() + j * G;
            for (size_t s = 0; s < G; ++s) {
              const uint32_t g = gt_ord[s];
              if (gt_matched[s] && !gt_crowd[g]) continue;
              if (m > -1 && !gt_ignore[gt_ord[static_cast<size_t>(m)]] && gt_ignore[g]) break;
              if (row[g] < best) continue;
              best = row[g];
              m = static_cast<int64_t>(s);
            }
            uint8_t out;
            if (m == -1) {
              out = dt_outside[j] ? kIgnored : kFalsePositive;  // item 8
            } else {
              gt_matched[static_cast<size_t>(m)] = 1;
              const uint32_t g = gt_ord[static_cast<size_t>(m)];
              // dtMatches holds the GT id; id 0 reads as unmatched (item 17)
              const bool matched = gt.annotations[gt_idx[g]].id != 0;
              const bool ignored = gt_ignore[g] || (!matched && dt_outside[j]);
              out = ignored ? kIgnored : (matched ? kTruePositive : kFalsePositive);
            }
            outcome[(b.kept_begin + j) * AT + a * T + t] = out;
          }
        }
      }
    }
  });

  return O;
}

// accumulate(), one category at a time, in parallel; fills res.precision / recall / scores.
void accumulate_categories(const CocoEvalParams& p, const BlockLayout& L, const BlockOutcomes& O,
                           CocoEvalResult& res) {
  const size_t T = p.iou_thresholds.size(), R = p.recall_thresholds.size();
  const size_t A = p.area_ranges.size(), M = p.max_dets.size(), AT = A * T;
  const size_t K = res.num_k;
  const std::vector<Block>& blocks = L.blocks;
  const std::vector<uint32_t>& cat_block_begin = L.cat_block_begin;
  const std::vector<double>& kept_score = O.score;
  const std::vector<uint32_t>& kept_rank = O.rank;
  const std::vector<uint8_t>& outcome = O.outcome;
  const std::vector<uint32_t>& block_npig = O.npig;
  parallel_for(0, static_cast<int64_t>(K), 1, [&](int64_t kb, int64_t ke) {
    std::vector<uint32_t> order, rank_sorted, tp_pos;
    std::vector<double> score_sorted, tp_pr;
    std::vector<uint8_t> codes;
    for (int64_t ki = kb; ki < ke; ++ki) {
      const size_t k = static_cast<size_t>(ki);
      const uint32_t first = cat_block_begin[k], last = cat_block_begin[k + 1];
      if (first == last) continue;  // len(E) == 0
      std::vector<uint64_t> npig(A, 0);
      for (uint32_t bi = first; bi < last; ++bi) {
        for (size_t a = 0; a < A; ++a) npig[a] += block_npig[bi * A + a];
      }
      const size_t base = blocks[first].kept_begin;
      const size_t n = blocks[last - 1].kept_begin + blocks[last - 1].kept - base;
      // concatenation in image order, then np.argsort(-scores, kind='mergesort') (item 6); the
      // stable order of the detections kept by a smaller maxDets is a subsequence of this one.
      order.resize(n);
      std::iota(order.begin(), order.end(), 0u);
      std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
        return kept_score[base + x] > kept_score[base + y];
      });
      rank_sorted.resize(n);
      score_sorted.resize(n);
      codes.resize(AT * n);  // outcomes in score order, one contiguous run per (area, threshold)
      for (size_t i = 0; i < n; ++i) {
        rank_sorted[i] = kept_rank[base + order[i]];
        score_sorted[i] = kept_score[base + order[i]];
        const uint8_t* row = outcome.data() + (base + order[i]) * AT;
        for (size_t at = 0; at < AT; ++at) codes[at * n + i] = row[at];
      }
      for (size_t a = 0; a < A; ++a) {
        if (npig[a] == 0) continue;
        const double npig_d = static_cast<double>(npig[a]);
        for (size_t m = 0; m < M; ++m) {
          const uint64_t cut = static_cast<uint64_t>(p.max_dets[m]);
          for (size_t t = 0; t < T; ++t) {
            const uint8_t* run = codes.data() + (a * T + t) * n;
            // One pass over the detections kept by maxDets[m] (nd of them) records where the
            // cumulative TP count steps up and the FP count there. With tp, fp the cumsums:
            //   rc[i] = tp[i] / npig, pr[i] = tp[i] / (fp[i] + tp[i] + eps)     (item 9)
            // pr only rises where tp steps up, so the running max from the right (item 10) at i is
            // max(pr[i], pr at the later TP steps).
            tp_pos.clear();
            tp_pr.clear();
            uint64_t tp = 0, fp = 0, nd = 0;
            for (size_t i = 0; i < n; ++i) {
              if (rank_sorted[i] >= cut) continue;
              const uint8_t o = run[i];
              if (o == kTruePositive) {
                ++tp;
                tp_pos.push_back(static_cast<uint32_t>(i));
                const double tpd = static_cast<double>(tp), fpd = static_cast<double>(fp);
                tp_pr.push_back(tpd / (fpd + tpd + kEps));
              } else if (o == kFalsePositive) {
                ++fp;
              }
              ++nd;
            }
            for (size_t q = tp_pr.size(); q-- > 1;) {
              if (tp_pr[q] > tp_pr[q - 1]) tp_pr[q - 1] = tp_pr[q];
            }
            const double tp_d = static_cast<double>(tp);
            res.recall[((t * K + k) * A + a) * M + m] = nd ? tp_d / npig_d : 0.0;
            for (size_t r = 0; r < R; ++r) {
              const size_t idx = (((t * R + r) * K + k) * A + a) * M + m;
              res.precision[idx] = 0.0;
              res.scores[idx] = 0.0;
            }
            if (nd == 0) continue;
            for (size_t r = 0; r < R; ++r) {
              // np.searchsorted(rc, recThrs, side='left'): rc is a monotone function of the TP
              // count, so find the smallest count v with v / npig >= thr; thresholds past the
              // last recall leave the rest of the row at 0.
              const double thr = p.recall_thresholds[r];
              if (!(tp_d / npig_d >= thr)) break;
              double guess = std::ceil(thr * npig_d);
              uint64_t v = guess <= 0.0 ? 0 : std::min<uint64_t>(tp, static_cast<uint64_t>(guess));
              while (v > 0 && static_cast<double>(v - 1) / npig_d >= thr) --v;
              while (static_cast<double>(v) / npig_d < thr) ++v;
              // first detection with tp[i] >= v; for v = 0 the first detection, whose pr is 0
              // unless it is itself the first TP
              const size_t pos = v == 0 ? 0 : v - 1;
              const size_t pi = v == 0 ? 0 : tp_pos[pos];
              const double prec = tp_pr.empty() ? 0.0 : tp_pr[pos];
              const size_t idx = (((t * R + r) * K + k) * A + a) * M + m;
              res.precision[idx] = prec;
              // the scores row is indexed by position among the kept detections
              res.scores[idx] = score_sorted[pi];
            }
          }
        }
      }
    }
  });
}

}  // namespace

std::vector<double> numpy_linspace(double start, double stop, size_t num) {
  std::vector<double> y(num);
  if (num == 0) return y;
  const double delta = stop - start;
  const size_t div = num - 1;
  if (div > 0) {
    const double step = delta / static_cast<double>(div);
    for (size_t i = 0; i < num; ++i) {
      y[i] = step == 0.0 ? static_cast<double>(i) / static_cast<double>(div) * delta
                         : static_cast<double>(i) * step;
    }
  } else {
    y[0] = 0.0 * delta;
  }
  for (double& v : y) v += start;
  if (num > 1) y[num - 1] = stop;
  return y;
}

namespace {

// CocoOperatingPoint of an evaluation: the kept detections (rank < the largest maxDets) in
// descending score order, TP / FP at the chosen IoU threshold and area, F1 at every score where
// the next detection scores lower (ties are kept or dropped together).
CocoOperatingPoint find_operating_point(const CocoEvalParams& p, const BlockLayout& L,
                                        const BlockOutcomes& O) {
  const size_t T = p.iou_thresholds.size(), A = p.area_ranges.size();
  CocoOperatingPoint best;
  if (T == 0 || A == 0) return best;
  size_t t = 0, a = 0;
  for (size_t i = 0; i < T; ++i) {
    if (p.iou_thresholds[i] == 0.5) t = i;
  }
  for (size_t i = A; i-- > 0;) {
    if (p.area_labels[i] == "all") a = i;
  }
  best.iou_threshold = p.iou_thresholds[t];
  for (size_t b = 0; b < L.blocks.size(); ++b) best.ground_truth += O.npig[b * A + a];
  const auto cut = static_cast<uint32_t>(p.max_dets.back());
  std::vector<uint32_t> order;
  for (size_t i = 0; i < O.score.size(); ++i) {
    if (O.rank[i] < cut && O.outcome[i * A * T + a * T + t] != kIgnored)
      order.push_back(static_cast<uint32_t>(i));
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t x, uint32_t y) { return O.score[x] > O.score[y]; });
  int64_t tp = 0, fp = 0;
  best.score_threshold = order.empty() ? 0.0 : O.score[order.front()];
  for (size_t i = 0; i < order.size(); ++i) {
    (O.outcome[order[i] * A * T + a * T + t] == kTruePositive ? tp : fp) += 1;
    if (i + 1 < order.size() && O.score[order[i + 1]] == O.score[order[i]]) continue;
    const double f1 = 2.0 * static_cast<double>(tp) /
                      static_cast<double>(tp + fp + best.ground_truth);
    if (f1 > best.f1) {
      best.f1 = f1;
      best.score_threshold = O.score[order[i]];
      best.true_positives = tp;
      best.false_positives = fp;
    }
  }
  const auto tp_d = static_cast<double>(best.true_positives);
  best.precision = best.true_positives > 0 ? tp_d / (tp_d + best.false_positives) : 0.0;
  best.recall = best.ground_truth > 0 ? tp_d / static_cast<double>(best.ground_truth) : 0.0;
  return best;
}

}  // namespace

CocoEvalParams::CocoEvalParams()
    : iou_thresholds(numpy_linspace(0.5, 0.95, 10)),
      recall_thresholds(numpy_linspace(0.0, 1.0, 101)) {}

double CocoEvalResult::precision_at(size_t t, size_t r, size_t k, size_t a, size_t m) const {
  return precision[(((t * num_r + r) * num_k + k) * num_a + a) * num_m + m];
}

double CocoEvalResult::recall_at(size_t t, size_t k, size_t a, size_t m) const {
  return recall[((t * num_k + k) * num_a + a) * num_m + m];
}

double CocoEvalResult::category_ap(size_t k, double iou_threshold) const {
  SETDET_CHECK(k < num_k, "category_ap: category index ", k, " out of range [0, ", num_k, ")");
  if (num_a == 0 || num_m == 0) return -1.0;
  size_t a = 0;
  for (size_t i = 0; i < num_a; ++i) {
    if (params.area_labels[i] == "all") {
      a = i;
      break;
    }
  }
  std::vector<double> vals;
  for (size_t t = 0; t < num_t; ++t) {
    if (iou_threshold >= 0.0 && params.iou_thresholds[t] != iou_threshold) continue;
    for (size_t r = 0; r < num_r; ++r) {
      const double v = precision_at(t, r, k, a, num_m - 1);
      if (v > -1.0) vals.push_back(v);
    }
  }
  return vals.empty() ? -1.0 : numpy_mean(vals);
}

CocoEvalResult evaluate_coco(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                             const CocoEvalParams& params) {
  CocoEvalResult res;
  res.params = resolve_params(gt, params);
  const CocoEvalParams& p = res.params;
  res.num_t = p.iou_thresholds.size();
  res.num_r = p.recall_thresholds.size();
  res.num_k = p.use_cats ? p.category_ids.size() : 1;
  res.num_a = p.area_ranges.size();
  res.num_m = p.max_dets.size();
  const size_t n = res.num_t * res.num_r * res.num_k * res.num_a * res.num_m;
  res.precision.assign(n, -1.0);
  res.scores.assign(n, -1.0);
  res.recall.assign(res.num_t * res.num_k * res.num_a * res.num_m, -1.0);

  const BlockLayout layout = build_blocks(gt, dets, p);
  const BlockOutcomes outcomes = evaluate_blocks(gt, dets, p, layout);
  accumulate_categories(p, layout, outcomes, res);
  if (p.operating_point) res.operating_point = find_operating_point(p, layout, outcomes);

  const auto specs = summary_specs(p);
  for (size_t i = 0; i < 12; ++i) res.stats[i] = summarize_one(res, specs[i]);
  return res;
}

std::string format_coco_summary(const CocoEvalResult& result) {
  const CocoEvalParams& p = result.params;
  const auto specs = summary_specs(p);
  std::string out;
  for (size_t i = 0; i < 12; ++i) {
    const SummarySpec& s = specs[i];
    // ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}'
    std::string iou = s.iou < 0.0 ? format_fixed(p.iou_thresholds.front(), 2) + ":" +
                                        format_fixed(p.iou_thresholds.back(), 2)
                                  : format_fixed(s.iou, 2);
    if (iou.size() < 9) iou.resize(9, ' ');
    std::string area = s.area;
    if (area.size() < 6) area.insert(0, 6 - area.size(), ' ');
    std::string dets = std::to_string(s.max_dets);
    if (dets.size() < 3) dets.insert(0, 3 - dets.size(), ' ');
    out += s.ap ? " Average Precision  (AP) @[ IoU=" : " Average Recall     (AR) @[ IoU=";
    out += iou + " | area=" + area + " | maxDets=" + dets +
           " ] = " + format_fixed(result.stats[i], 3) + "\n";
  }
  return out;
}

const std::array<const char*, 12>& coco_stat_names() {
  static const std::array<const char*, 12> names = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};
  return names;
}

}  // namespace setdet
