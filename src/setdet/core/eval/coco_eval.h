// COCO bbox evaluation identical to pycocotools' COCOeval (evaluate, accumulate, summarize):
// ../shared/reference/coco_eval.md lists the semantics reproduced. Multi-threaded over images and
// categories (setdet::num_threads()); results are identical whatever the thread count.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "setdet/core/io/coco.h"

namespace setdet {

struct CocoEvalParams {
  // Defaults are pycocotools' (np.linspace values as numpy computes them).
  std::vector<double> iou_thresholds;     // default np.linspace(.5, .95, 10)
  std::vector<double> recall_thresholds;  // default np.linspace(0, 1, 101)
  std::vector<int64_t> max_dets{1, 10, 100};
  std::vector<std::array<double, 2>> area_ranges{
      {0.0, 1e10}, {0.0, 1024.0}, {1024.0, 9216.0}, {9216.0, 1e10}};
  std::vector<std::string> area_labels{"all", "small", "medium", "large"};
  std::vector<int64_t> category_ids;  // empty: all categories of the ground truth
  std::vector<int64_t> image_ids;     // empty: all images of the ground truth
  bool use_cats = true;               // false: class-agnostic (pycocotools useCats = 0)

  CocoEvalParams();  // fills the default thresholds
};

struct CocoEvalResult {
  CocoEvalParams params;         // as used (category_ids / image_ids filled, sorted)
  std::array<double, 12> stats;  // pycocotools' order: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl
  // pycocotools' eval['precision'] [T, R, K, A, M] and eval['recall'] [T, K, A, M], row-major
  // in that index order; -1 where a category has no ground truth.
  std::vector<double> precision;
  std::vector<double> recall;
  std::vector<double> scores;  // eval['scores'], same shape as precision
  size_t num_t = 0, num_r = 0, num_k = 0, num_a = 0, num_m = 0;

  double precision_at(size_t t, size_t r, size_t k, size_t a, size_t m) const;
  double recall_at(size_t t, size_t k, size_t a, size_t m) const;
  // AP@[.5:.95] (area all, last maxDets) for category index k; -1 without ground truth.
  double category_ap(size_t k, double iou_threshold = -1.0) const;
};

CocoEvalResult evaluate_coco(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                             const CocoEvalParams& params = {});

// The 12-line summary exactly as pycocotools' summarize() prints it.
std::string format_coco_summary(const CocoEvalResult& result);

// Names of the 12 stats ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
// "ARs", "ARm", "ARl").
const std::array<const char*, 12>& coco_stat_names();

}  // namespace setdet
