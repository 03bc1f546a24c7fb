// The post-processing step every detector shares (MMDetection's predict_by_feat /
// bbox_post_process, torchvision's postprocess_detections): candidate selection, clipping to the
// network input, the configured duplicate removal, the per-image cap, and the mapping back to
// original image pixels.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>

#include "setdet/config/config.h"
#include "setdet/models/dedup/duplicate_removal.h"
#include "setdet/models/detector.h"

namespace setdet {

// test_cfg keys every detector reads: score_thr, pre_nms_top_k (per level), nms (duplicate
// removal; `nms_thr: X` is short for {type: nms, iou_threshold: X}), max_per_img, clip (boxes
// clipped to the image, default true; DETR-family references leave them unclipped).
struct PostProcessConfig {
  double score_thr = 0.05;
  int64_t pre_nms_top_k = 1000;
  DuplicateRemovalConfig nms;
  int64_t max_per_img = 100;
  bool clip = true;

  // Reads the keys above from `cfg` (absent keys keep `defaults`); `extra_keys` are accepted
  // besides them (the detector reads those itself).
  static PostProcessConfig from_config(const Config& cfg, const PostProcessConfig& defaults,
                                       const std::vector<std::string>& extra_keys = {});
};

struct Candidates {
  at::Tensor scores;     // [K] float32, descending
  at::Tensor locations;  // [K] int64 row of `scores` (anchor / point / query)
  at::Tensor labels;     // [K] int64 class
};

// scores [N, C] (one level or all of one image): keep score > score_thr, then the top_k highest
// (top_k <= 0: all), as torchvision's postprocess_detections per level.
Candidates select_candidates(const at::Tensor& scores, double score_thr, int64_t top_k);

// [K, 4] xyxy boxes clamped to [0, w] x [0, h].
at::Tensor clip_boxes(const at::Tensor& boxes, double height, double width);

// Maps [K, 4] xyxy boxes in network-input pixels back to the original image of `meta`: undo the
// horizontal flip (about input width), divide by the resize scale, clip to the original size
// (unless `clip` is false).
at::Tensor boxes_to_original(const at::Tensor& boxes, const ImageMeta& meta, bool clip = true);

// H, W of batch.images ({0, 0} when the batch carries no image tensor).
std::array<int64_t, 2> padded_size(const Batch& batch);

// Height and width of the network input of `meta` (its resized size; `padded_hw` when unset).
// Throws when neither is known.
std::array<double, 2> input_size(const ImageMeta& meta, const std::array<int64_t, 2>& padded_hw);

// One image's candidates (boxes [K, 4] in input pixels, any device) -> its detections: clip to the
// input size (if cfg.clip), cfg.nms, keep cfg.max_per_img, map to original pixels.
Detections finalize_detections(const at::Tensor& boxes, const at::Tensor& scores,
                               const at::Tensor& labels, const ImageMeta& meta,
                               const std::array<int64_t, 2>& padded_hw,
                               const PostProcessConfig& cfg);

}  // namespace setdet
