// Two-stage Deformable DETR with iterative box refinement (Zhu et al. 2021) as DETA configures it
// (jozhang97/DETA models/deformable_detr.py), trained with either of two assignments on the same
// network (`assigner`):
//   hungarian  Deformable DETR's one-to-one HungarianMatcher, per image and per decoder layer
//              (and on the encoder's proposals, class-agnostic); no NMS at test time (top 100).
//   deta       DETA's IoU assignment ("NMS Strikes Back", Sec. 4): stage 1 on the encoder's
//              proposals, stage 2 on the decoder's (detached) input boxes, reused for every
//              decoder layer, object balancing (at most K positives per GT); class-aware NMS 0.7
//              at test time.
// Network: ResNet levels (backbone.0.body) + extra stride-2 levels, input projections (conv +
// GroupNorm(32)), sine positions + level embeddings, the deformable transformer, per-layer class
// and box heads (class_embed.{0..D}, bbox_embed.{0..D}; index D = the encoder's first stage).
// Losses per decoder layer and on the encoder output (DETA's SetCriterion): sigmoid focal
// (summed over queries and classes), L1 on normalised (cx, cy, w, h) and 1 - GIoU, each divided
// by the number of GT boxes in the batch (at least 1). Parameter names are the authors'.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "setdet/assign/deta_assigner.h"
#include "setdet/assign/hungarian_matcher.h"
#include "setdet/layers/mlp.h"
#include "setdet/models/backbones/backbone.h"
#include "setdet/models/detector.h"
#include "setdet/models/post_processing.h"
#include "setdet/models/transformers/deformable_transformer.h"
#include "setdet/models/transformers/query_selection.h"

namespace setdet {

enum class DetrAssignment { kHungarian, kDeta };

struct DeformableDETRTrainConfig {
  DetrAssignment assigner = DetrAssignment::kHungarian;
  HungarianMatcherOptions matcher;  // hungarian: every decoder layer and the encoder
  DetaIoUAssignerOptions stage1 = DetaIoUAssigner::stage1_defaults();  // deta: encoder
  DetaIoUAssignerOptions stage2 = DetaIoUAssigner::stage2_defaults();  // deta: decoder
  double cls_weight = 1.0;  // DETA's cls_loss_coef (Deformable DETR's default: 2)
  double bbox_weight = 5.0;
  double giou_weight = 2.0;
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
};

struct QuerySelectionConfig {
  bool deta = false;  // false: Deformable DETR's top-k; true: DETA's per-level NMS + share
  DetaQuerySelectionOptions options;
};

struct DeformableDETRParts {
  int64_t num_classes = 0;
  int64_t num_queries = 300;
  std::shared_ptr<Backbone> backbone;
  DeformableTransformerOptions transformer;
  DeformableDETRTrainConfig train;
  QuerySelectionConfig selection;
  PostProcessConfig test;
  bool channels_last = true;
};

// Everything the network predicts for a batch.
struct DeformableDETROutputs {
  std::vector<at::Tensor> logits;  // per decoder layer [B, Q, C] float32
  std::vector<at::Tensor> boxes;   // per decoder layer [B, Q, 4] sigmoid (cx, cy, w, h)
  at::Tensor reference_boxes;      // [B, Q, 4] the decoder's input boxes (detached)
  at::Tensor enc_logits;           // [B, S, C] first-stage logits (class 0 ranks the proposals)
  at::Tensor enc_boxes;            // [B, S, 4] first-stage boxes, sigmoid (cx, cy, w, h)
  at::Tensor anchors;              // [B, S, 4] sigmoid of the encoder proposals (1 where invalid)
  at::Tensor query_indices;        // [B, Q] int64 selected encoder positions
};

class DeformableDETR : public DetectorModel {
 public:
  explicit DeformableDETR(DeformableDETRParts parts);

  // "loss_cls", "loss_bbox", "loss_giou" (last decoder layer), the same with "_0" .. "_{D-2}"
  // (auxiliary decoder layers) and "_enc" (first stage); "num_pos" / "num_pos_enc": positive
  // pairs of the last layer / the first stage over the batch.
  std::map<std::string, at::Tensor> losses(const Batch& batch) override;
  // Last layer: sigmoid of every (query, class), the pre_nms_top_k best (test_cfg), boxes in input
  // pixels, then finalize_detections (the configured duplicate removal, max_per_img).
  std::vector<Detections> predict(const Batch& batch) override;
  int64_t num_classes() const override { return num_classes_; }
  // Last-layer logits and boxes for an unpadded batch.
  std::vector<at::Tensor> forward_network(const at::Tensor& images) override;
  DuplicateRemovalConfig* duplicate_removal() override { return &test_.nms; }

  // images [B, 3, H, W]; padding_mask [B, H, W] bool (true on padding) or undefined (none).
  DeformableDETROutputs forward_outputs(const at::Tensor& images,
                                        const at::Tensor& padding_mask = {});

  // Positive (query, GT) pairs per image for decoder layer `layer` (hungarian) or every layer
  // (deta: stage 2 on the reference boxes) and for the first stage; GT boxes normalised
  // (cx, cy, w, h).
  std::vector<PositivePairs> assign_decoder(const DeformableDETROutputs& out, int64_t layer,
                                            const std::vector<at::Tensor>& gt_boxes,
                                            const std::vector<at::Tensor>& gt_labels) const;
  std::vector<PositivePairs> assign_encoder(const DeformableDETROutputs& out,
                                            const std::vector<at::Tensor>& gt_boxes) const;

  const DeformableDETRTrainConfig& train_cfg() const { return train_; }
  const QuerySelectionConfig& selection() const { return selection_; }
  const PostProcessConfig& test_cfg() const { return test_; }
  int64_t num_queries() const { return num_queries_; }
  DeformableTransformerImpl& transformer() { return *transformer_; }

 private:
  std::map<std::string, at::Tensor> set_losses(const at::Tensor& logits, const at::Tensor& boxes,
                                               const std::vector<PositivePairs>& pairs,
                                               const std::vector<at::Tensor>& gt_boxes,
                                               const std::vector<at::Tensor>& gt_labels,
                                               double num_boxes) const;

  int64_t num_classes_;
  int64_t num_queries_;
  std::shared_ptr<Backbone> backbone_;
  std::vector<torch::nn::Sequential> input_proj_;
  DeformableTransformer transformer_{nullptr};
  std::vector<torch::nn::Linear> class_embed_;
  std::vector<MLP> bbox_embed_;
  DeformableDETRTrainConfig train_;
  QuerySelectionConfig selection_;
  PostProcessConfig test_;
  bool channels_last_;
};

// Config keys (model node): type, num_classes, num_queries (300), backbone (a ResNet giving C3-C5
// or any levels), num_feature_levels (>= the backbone's levels; extra levels are 3x3 stride-2
// convs), transformer {d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
// dropout, enc_n_points, dec_n_points}, assigner (hungarian | deta | {type: hungarian, cost_class,
// cost_bbox, cost_giou} | {type: deta, max_k: 4 or null, stage1: {...}, stage2: {...}}),
// query_selection (topk | deta | {type, pre_nms_top_k, nms_iou_threshold}; default: deta with the
// deta assigner), loss {cls_weight, bbox_weight, giou_weight, focal_alpha, focal_gamma}, test_cfg
// (post-processing keys + clip; defaults: deta -> top 10000, nms 0.7, 100, no clipping;
// hungarian -> top 100, no NMS), channels_last (true). Registered as "DeformableDETR" (default
// assigner hungarian) and "DETA" (default assigner deta).
std::shared_ptr<DeformableDETR> build_deformable_detr(const Config& cfg,
                                                      DetrAssignment default_assigner);

}  // namespace setdet
