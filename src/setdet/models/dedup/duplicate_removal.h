// Duplicate removal as a configurable step of every detector's test_cfg (MMDetection's
// `test_cfg.nms`): the same candidates can be reduced by greedy NMS, Soft-NMS, Matrix NMS, a
// learned network (detectors that carry one) or nothing (NMS-free outputs).
//
//   test_cfg: {nms: {type: nms, iou_threshold: 0.6}, max_per_img: 100}
//   test_cfg: {nms: {type: soft_nms, iou_threshold: 0.3, method: linear, min_score: 0.05}}
//   test_cfg: {nms: {type: matrix_nms, kernel: gaussian, sigma: 2.0}}
//   test_cfg: {nms: {type: learned}}   (a detector with a DuplicateRemovalNet)
//   test_cfg: {nms: {type: none}}
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "setdet/config/config.h"

namespace setdet {

struct DuplicateRemovalConfig {
  // "nms" | "soft_nms" | "matrix_nms" | "learned" | "none"
  std::string type = "nms";
  double iou_threshold = 0.5;  // nms: suppress IoU > thr; soft_nms: decay IoU >= thr
  bool class_agnostic = false;
  // soft_nms (mmcv.ops.soft_nms): linear | gaussian | naive, gaussian sigma, drop below min_score
  std::string method = "linear";
  double sigma = 0.5;
  double min_score = 1e-3;
  // matrix_nms (Paddle's box matrix_nms): gaussian | linear decay, drop decayed <= post_threshold
  std::string kernel = "gaussian";
  double matrix_sigma = 2.0;
  double post_threshold = 0.0;

  // The types remove_duplicates() runs without a network.
  static const std::vector<std::string>& known_types();
  // e.g. "nms(iou 0.60)", "soft_nms(linear, iou 0.30, min 0.001)" for logs and tables.
  std::string describe() const;
};

// Reads {type, iou_threshold, class_agnostic, method, sigma, min_score, kernel, post_threshold}
// ("sigma" is Matrix NMS's sigma when type is matrix_nms); `fallback` supplies unset keys.
DuplicateRemovalConfig duplicate_removal_from_config(const Config& cfg,
                                                     const DuplicateRemovalConfig& fallback = {});
// "nms", "soft_nms", ... optionally with key=value options: "soft_nms:method=gaussian,sigma=0.5"
// (the `setdet test --dedup` syntax); unset keys come from `fallback`. `origin` names the option
// in errors.
DuplicateRemovalConfig parse_duplicate_removal(const std::string& spec, const std::string& origin,
                                               const DuplicateRemovalConfig& fallback = {});

struct KeptDetections {
  at::Tensor indices;  // [K] int64 into the candidates, by descending (final) score
  at::Tensor scores;   // [K] float32 final scores (decayed for soft / matrix NMS)
};

// Candidates of one image: boxes [N, 4] float32 xyxy, scores [N] float32, labels [N] int64 (any
// device; computed on CPU). Class-aware unless cfg.class_agnostic; at most max_per_img (<= 0: all)
// by final score. nms: torchvision.ops.batched_nms's keep set and order; soft_nms: mmcv's soft_nms
// per class (MMDetection's batched_nms with soft_nms), boxes sorted by decayed score; matrix_nms:
// Paddle's box matrix_nms; none: every candidate by score. "learned" needs the detector's network
// and is an error here.
KeptDetections remove_duplicates(const at::Tensor& boxes, const at::Tensor& scores,
                                 const at::Tensor& labels, const DuplicateRemovalConfig& cfg,
                                 int64_t max_per_img);

}  // namespace setdet
