// RetinaNet (Lin et al. 2017): backbone -> neck -> RetinaHead over AnchorGenerator anchors, trained
// with MaxIoUAssigner targets, sigmoid focal loss and an L1 / smooth-L1 loss on DeltaXYWH deltas
// (or an IoU-family loss on decoded boxes); inference as torchvision's
// RetinaNet.postprocess_detections. Module names mirror torchvision's RetinaNet (backbone.body,
// backbone.fpn, head.classification_head, head.regression_head), so its state_dict maps by name.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "setdet/assign/max_iou_assigner.h"
#include "setdet/losses/loss.h"
#include "setdet/models/dense_heads/retina_head.h"
#include "setdet/models/detectors/single_stage.h"
#include "setdet/models/post_processing.h"
#include "setdet/structures/anchors.h"
#include "setdet/structures/box_coder.h"

namespace setdet {

// score_thr applies to sigmoid(cls) per level (strict >); defaults as torchvision's RetinaNet:
// class-aware NMS 0.5, 300 per image.
struct RetinaNetTestConfig : PostProcessConfig {
  RetinaNetTestConfig() { max_per_img = 300; }
};

struct RetinaNetLossConfig {
  std::shared_ptr<Loss> cls;   // on logits vs one-hot targets, over non-ignored anchors
  std::shared_ptr<Loss> bbox;  // on positives
  // true: bbox loss on DeltaXYWH deltas vs encoded targets (L1Loss, SmoothL1Loss,
  // BalancedL1Loss); false: on decoded boxes vs the GT boxes (GIoULoss, IoULoss, BoundedIoULoss).
  bool bbox_on_deltas = true;
  // true (torchvision): each image's losses divided by its own number of positives (at least 1),
  // then averaged over images; false (MMDetection): sums over the batch divided by the batch's
  // number of positives (at least 1).
  bool per_image_normalization = true;
};

class RetinaNetDetector : public SingleStageDetector {
 public:
  RetinaNetDetector(int64_t num_classes, std::shared_ptr<Backbone> backbone,
                    std::shared_ptr<Neck> neck, std::shared_ptr<RetinaHeadImpl> head,
                    AnchorGenerator anchors, std::shared_ptr<AnchorAssigner> assigner,
                    DeltaXYWHBoxCoder coder, RetinaNetLossConfig loss, RetinaNetTestConfig test_cfg,
                    bool channels_last = false);

  // "loss_cls", "loss_bbox" plus "num_pos" (not a loss: no "loss" prefix).
  std::map<std::string, at::Tensor> losses(const Batch& batch) override;
  std::vector<Detections> predict(const Batch& batch) override;

  // Raw head outputs for an image batch: per level "cls_logits" and "bbox_deltas".
  DenseHeadOutputs forward(const at::Tensor& images);
  std::vector<at::Tensor> forward_network(const at::Tensor& images) override {
    return flatten_outputs(forward(images));
  }
  // Per level [H * W * A, 4] anchors for these head outputs on a batch of padded size padded_hw.
  std::vector<at::Tensor> anchors_for(const DenseHeadOutputs& out,
                                      const std::array<int64_t, 2>& padded_hw) const;

  const AnchorGenerator& anchor_generator() const { return anchors_; }
  const RetinaNetTestConfig& test_cfg() const { return test_cfg_; }
  DuplicateRemovalConfig* duplicate_removal() override { return &test_cfg_.nms; }
  bool supports_inference_dtype() const override { return true; }

 private:
  std::shared_ptr<RetinaHeadImpl> head_;
  AnchorGenerator anchors_;
  std::shared_ptr<AnchorAssigner> assigner_;
  DeltaXYWHBoxCoder coder_;
  RetinaNetLossConfig loss_;
  RetinaNetTestConfig test_cfg_;
};

// Config keys (model node): type, num_classes, backbone, neck, head (RetinaHead), anchor_generator
// (see anchor_generator_options_from_config), assigner (AnchorAssignerRegistry, default
// MaxIoUAssigner 0.5 / 0.4 with low-quality matches), box_coder {weights: [4], clip}, loss_cls
// (default FocalLoss 0.25 / 2), loss_bbox (LossRegistry, default {type: L1Loss}; L1Loss,
// SmoothL1Loss and BalancedL1Loss on deltas, others on decoded boxes), per_image_normalization
// (default true), test_cfg {score_thr, pre_nms_top_k, nms | nms_thr, max_per_img}, channels_last
// (default true).
// Registered in DetectorRegistry as "RetinaNet".
std::shared_ptr<RetinaNetDetector> build_retinanet(const Config& cfg);

}  // namespace setdet
