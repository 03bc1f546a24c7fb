// DETA's IoU assignment (Ouyang-Zhang et al. 2022, "NMS Strikes Back", Sec. 4), as its code does
// it (jozhang97/DETA models/assigner.py, Stage1Assigner / Stage2Assigner): detectron2's Matcher
// (max IoU with thresholds and low-quality matches), a random subset of the positives, then
// object balancing (sample_topk_per_gt). Only positives are returned: every other prediction is
// trained as background, including ignored and unsampled positives.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

#include "setdet/config/config.h"

namespace setdet {

// Positive (prediction, GT) pairs of one image; a prediction may appear with several GTs after
// object balancing.
struct PositivePairs {
  at::Tensor pred;  // [P] int64
  at::Tensor gt;    // [P] int64
};

// Object balancing (sample_topk_per_gt): for each GT g with c > 0 pairs in `pairs`, the first
// min(c, k) predictions of highest IoU with g among ALL predictions (iou [M, N], row g; at::topk
// order); GTs in ascending order. A GT's balanced positives can thus include predictions that
// were not positives, or were matched to another GT.
PositivePairs balance_positives(const PositivePairs& pairs, const at::Tensor& iou, int64_t k);

struct DetaIoUAssignerOptions {
  double neg_iou_thr = 0.3;  // max IoU < neg: background
  double pos_iou_thr = 0.7;  // max IoU >= pos: positive; in between: ignored (background here)
  // Each GT also claims its highest-IoU predictions (ties included), as detectron2's
  // set_low_quality_matches_ (also when that IoU is 0).
  bool allow_low_quality_matches = true;
  int64_t num_samples = 256;  // <= 0: the number of predictions (stage 2: the queries)
  double pos_fraction = 0.5;  // at most int(num_samples * pos_fraction) positives, drawn at random
  std::optional<int64_t> max_k = 4;  // object balancing K; nullopt: none (Table 8, K = inf)
};

class DetaIoUAssigner {
 public:
  explicit DetaIoUAssigner(DetaIoUAssignerOptions options);
  // Stage 1, on the encoder's proposals: IoU 0.3 / 0.7, 256 samples, 50% positives, K = 4.
  static DetaIoUAssignerOptions stage1_defaults();
  // Stage 2, on the decoder's input boxes: IoU 0.6, num_samples = the queries, 25%, K = 4.
  static DetaIoUAssignerOptions stage2_defaults();

  // boxes [N, 4], gt_boxes [M, 4] xyxy (any common unit) -> positive pairs; at::randperm draws
  // the subset. No GT: no pairs.
  PositivePairs assign(const at::Tensor& boxes, const at::Tensor& gt_boxes) const;

  const DetaIoUAssignerOptions& options() const { return options_; }

 private:
  DetaIoUAssignerOptions options_;
};

// Reads {neg_iou_thr, pos_iou_thr, allow_low_quality_matches, num_samples, pos_fraction} over
// `defaults`; errors name the key path.
DetaIoUAssignerOptions deta_assigner_options(const Config& cfg,
                                             const DetaIoUAssignerOptions& defaults);

}  // namespace setdet
