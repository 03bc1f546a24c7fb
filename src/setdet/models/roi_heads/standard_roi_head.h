// The R-CNN stage of two-stage detectors (MMDetection's StandardRoIHead, torchvision's RoIHeads):
// RoI features from the pyramid, the 2fc (+RM) box head and predictor; in training the GT boxes
// join the proposals, a max-IoU assigner (0.5) and a sampler (random 512 x 25%, or OHEM) choose
// the RoIs, softmax cross-entropy and a delta loss (smooth L1) train it; at inference the class
// scores and per-class boxes go through the detector's post-processing (test_cfg.nms) or the
// learned duplicate-removal network (test_cfg.nms.type learned; Relation Networks Sec. 4.3).
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "setdet/assign/max_iou_assigner.h"
#include "setdet/assign/sampler.h"
#include "setdet/losses/loss.h"
#include "setdet/models/backbones/backbone.h"
#include "setdet/models/dedup/learned_nms.h"
#include "setdet/models/detector.h"
#include "setdet/models/post_processing.h"
#include "setdet/models/roi_extractors/multi_scale_roi_align.h"
#include "setdet/models/roi_heads/box_head.h"
#include "setdet/structures/box_coder.h"

namespace setdet {

// torchvision's RoIHeads defaults: score > 0.05, boxes with a side < 0.01 px dropped, class-aware
// NMS 0.5, 100 per image (pre_nms_top_k: all).
struct RoIHeadTestConfig : PostProcessConfig {
  RoIHeadTestConfig() {
    pre_nms_top_k = -1;
    nms.iou_threshold = 0.5;
  }
  double min_size = 1e-2;
};

struct RoIHeadParts {
  int64_t num_classes = 0;
  std::shared_ptr<RoIExtractor> extractor;
  TwoMLPHead box_head{nullptr};
  FastRCNNPredictor predictor{nullptr};
  std::shared_ptr<AnchorAssigner> assigner;
  std::shared_ptr<Sampler> sampler;
  std::shared_ptr<Loss> loss_cls, loss_bbox;
  DeltaXYWHBoxCoder coder{{10.0, 10.0, 5.0, 5.0}};
  RoIHeadTestConfig test_cfg;
  DuplicateRemovalNet dedup{nullptr};  // optional learned duplicate removal
  double dedup_loss_weight = 1.0;
};

// Module names as torchvision's RoIHeads: box_head (fc6, fc7, relation modules), box_predictor
// (cls_score, bbox_pred); the learned duplicate-removal network as dedup_head.
class StandardRoIHeadImpl : public torch::nn::Module {
 public:
  explicit StandardRoIHeadImpl(RoIHeadParts parts);

  // "loss_cls", "loss_bbox", "num_rois", "num_pos" (+ "loss_dedup" when a duplicate-removal
  // network trains). `proposals`: per image [K_i, 4] detached, input pixels.
  std::map<std::string, at::Tensor> losses(const std::vector<at::Tensor>& features,
                                           const std::vector<at::Tensor>& proposals,
                                           const Batch& batch);
  // Only the duplicate-removal network's loss, the rest of the detector frozen (Sec. 4.3): the
  // head runs without gradient on the proposals.
  std::map<std::string, at::Tensor> dedup_losses(const std::vector<at::Tensor>& features,
                                                 const std::vector<at::Tensor>& proposals,
                                                 const Batch& batch);
  std::vector<Detections> predict(const std::vector<at::Tensor>& features,
                                  const std::vector<at::Tensor>& proposals, const Batch& batch);

  int64_t num_classes() const { return parts_.num_classes; }
  RoIHeadTestConfig& test_cfg() { return parts_.test_cfg; }
  bool has_dedup() const { return !parts_.dedup.is_empty(); }
  // Only the duplicate-removal network trains (its frozen_detector option).
  bool trains_dedup_only() const {
    return !parts_.dedup.is_empty() && parts_.dedup->options().frozen_detector();
  }
  DuplicateRemovalNetImpl* dedup() {
    return parts_.dedup.is_empty() ? nullptr : parts_.dedup.get();
  }
  TwoMLPHeadImpl& box_head() { return *parts_.box_head; }

 private:
  struct HeadOutput {
    at::Tensor class_logits;  // [K, C + 1], background last
    at::Tensor deltas;        // [K, C or 1, 4]
    at::Tensor features;      // [K, fc_dim]
  };
  // `rois` per image, each with its number of keys (the rest: GT boxes, queries only).
  HeadOutput run_head(const std::vector<at::Tensor>& features, const std::vector<at::Tensor>& rois,
                      const std::vector<int64_t>& num_keys, const Batch& batch);
  // Per foreground class decoded boxes [K, C, 4], clipped to the image.
  at::Tensor class_boxes(const HeadOutput& out, int64_t start, int64_t count,
                         const at::Tensor& rois, const ImageMeta& meta,
                         const std::array<int64_t, 2>& padded) const;
  // The duplicate-removal loss sum and its number of terms over the non-GT RoIs of each image.
  std::pair<at::Tensor, int64_t> dedup_loss_sum(const HeadOutput& out,
                                                const std::vector<at::Tensor>& rois,
                                                const std::vector<int64_t>& num_keys,
                                                const Batch& batch);
  // One image's learned duplicate removal: per class top-N, s0 * mean(s1).
  Detections learned_detections(const HeadOutput& out, int64_t start, int64_t count,
                                const at::Tensor& rois, const ImageMeta& meta,
                                const std::array<int64_t, 2>& padded);

  RoIHeadParts parts_;
};
TORCH_MODULE(StandardRoIHead);

// Config node (the detector's `roi_head`; defaults = torchvision's Faster R-CNN):
//   {type: StandardRoIHead, roi_extractor: {type: MultiScaleRoIAlign, output_size: 7,
//    sampling_ratio: 2, num_levels: 4}, fc_dim: 1024, relations: [0, 0] ({r1, r2}),
//    relation: {num_heads: 16, key_dim: 64, geometry_dim: 64, geometry: ours},
//    class_agnostic: false, background_first: true,
//    assigner: {type: MaxIoUAssigner, pos_iou_thr: 0.5, neg_iou_thr: 0.5,
//               allow_low_quality_matches: false},
//    sampler: {type: RandomSampler | OHEMSampler, num: 512, pos_fraction: 0.25},
//    loss_cls: {type: CrossEntropyLoss}, loss_bbox: {type: SmoothL1Loss, beta: 1/9},
//    bbox_coder_weights: [10, 10, 5, 5],
//    dedup_head: {type: DuplicateRemovalNet, ...} (optional), dedup_loss_weight: 1.0,
//    test_cfg: {score_thr: 0.05, min_size: 0.01, nms: {type: nms, iou_threshold: 0.5},
//               max_per_img: 100}}
// `in_shapes`: the neck's output shapes.
StandardRoIHead build_standard_roi_head(const Config& cfg, int64_t num_classes,
                                        const std::vector<ShapeSpec>& in_shapes);

}  // namespace setdet
