// COCO bbox evaluation identical to pycocotools' COCOeval (evaluate, accumulate, summarize),
// bit for bit (same double operations in the same order, numpy's pairwise mean included).
// Multi-threaded over images and categories (setdet::num_threads()); results are identical whatever
// the thread count.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "setdet/core/io/coco.h"

namespace setdet {

struct CocoEvalParams {
  // Defaults are pycocotools' (np.linspace values as numpy computes them).
  std::vector<double> iou_thresholds;         // default np.linspace(.5, .95, 10)
  std::vector<double> recall_thresholds;      // default np.linspace(0, 1, 101)
  std::vector<int64_t> max_dets{1, 10, 100};  // sorted by evaluate_coco, as pycocotools does
  std::vector<std::array<double, 2>> area_ranges{
      {0.0, 1e10}, {0.0, 1024.0}, {1024.0, 9216.0}, {9216.0, 1e10}};
  std::vector<std::string> area_labels{"all", "small", "medium", "large"};
  // Subsets; every id must exist in the ground truth. Empty: all. Detections outside them are
  // not evaluated. With use_cats the category ids are sorted (np.unique); without, their order
  // is the order in which pycocotools pools ground truth and detections, and is kept.
  std::vector<int64_t> category_ids;
  std::vector<int64_t> image_ids;
  bool use_cats = true;  // false: class-agnostic (pycocotools useCats = 0)
  // Also find the F1-best score threshold (CocoEvalResult::operating_point); not pycocotools'.
  bool operating_point = false;

  CocoEvalParams();  // fills the default thresholds
};

// The score threshold that maximises F1 = 2 TP / (detections + ground truth) over all categories
// pooled, at IoU 0.5 (else the first IoU threshold), area "all" (else the first area range) and
// the largest maxDets, with pycocotools' matching (crowd and out-of-range boxes ignored):
// keeping the detections scored >= score_threshold gives these counts.
struct CocoOperatingPoint {
  double iou_threshold = 0.5;
  double score_threshold = 0.0;
  double f1 = 0.0, precision = 0.0, recall = 0.0;
  int64_t true_positives = 0, false_positives = 0, ground_truth = 0;
};

struct CocoEvalResult {
  CocoEvalParams params;  // as used (category_ids / image_ids filled, sorted)
  // pycocotools' stats, in its order: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm,
  // ARl; -1 where nothing is selected (e.g. no maxDets of 100, no IoU threshold of 0.5). With
  // fewer than 3 max_dets, where pycocotools raises IndexError, the last one is used.
  std::array<double, 12> stats{};
  // pycocotools' eval['precision'] [T, R, K, A, M] and eval['recall'] [T, K, A, M], row-major
  // in that index order; -1 where a category has no ground truth. K is 1 without use_cats.
  std::vector<double> precision;
  std::vector<double> recall;
  std::vector<double> scores;  // eval['scores'], same shape as precision
  size_t num_t = 0, num_r = 0, num_k = 0, num_a = 0, num_m = 0;
  CocoOperatingPoint operating_point;  // with params.operating_point

  double precision_at(size_t t, size_t r, size_t k, size_t a, size_t m) const;
  double recall_at(size_t t, size_t k, size_t a, size_t m) const;
  // Mean of precision[t, :, k, a, M-1] over entries > -1 (area "all", else the first; all
  // thresholds, or those equal to iou_threshold when >= 0), numpy's mean, as detectron2's
  // per-category AP; -1 without ground truth.
  double category_ap(size_t k, double iou_threshold = -1.0) const;
};

// Throws setdet::Error for invalid params, and for detections / annotations whose image or
// category is not in the ground truth. Warns on stderr when an evaluated, non-crowd annotation
// has id 0 (reference item 17).
CocoEvalResult evaluate_coco(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                             const CocoEvalParams& params = {});

// The 12-line summary exactly as pycocotools' summarize() prints it.
std::string format_coco_summary(const CocoEvalResult& result);

// np.linspace(start, stop, num) bit for bit: start + i * ((stop - start) / (num - 1)), the last
// value exactly `stop` (pycocotools' default thresholds are linspaces).
std::vector<double> numpy_linspace(double start, double stop, size_t num);

// Names of the 12 stats ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
// "ARs", "ARm", "ARl").
const std::array<const char*, 12>& coco_stat_names();

}  // namespace setdet
