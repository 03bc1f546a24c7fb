// Two-stage detectors (MMDetection's TwoStageDetector; torchvision's GeneralizedRCNN): backbone ->
// neck -> region proposal network -> RoI head. Faster R-CNN (Ren et al. 2015) with FPN, and with
// the 2fc+RM head and learned duplicate removal of Relation Networks (Hu et al. 2018). Module
// names mirror torchvision's FasterRCNN (backbone.body, backbone.fpn, rpn.head, roi_heads.box_head,
// roi_heads.box_predictor), so its state_dict maps by name.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "setdet/models/backbones/backbone.h"
#include "setdet/models/detector.h"
#include "setdet/models/necks/fpn.h"
#include "setdet/models/proposal_generators/rpn.h"
#include "setdet/models/roi_heads/standard_roi_head.h"

namespace setdet {

class TwoStageDetector : public DetectorModel {
 public:
  TwoStageDetector(int64_t num_classes, std::shared_ptr<Backbone> backbone,
                   std::shared_ptr<Neck> neck, RegionProposalNetwork rpn, StandardRoIHead roi_head,
                   bool channels_last);

  // "loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox" (+ "loss_dedup"), "num_rois",
  // "num_pos". With a duplicate-removal network on a frozen detector, only "loss_dedup": the
  // rest runs in eval mode without gradient and its parameters are frozen.
  std::map<std::string, at::Tensor> losses(const Batch& batch) override;
  std::vector<Detections> predict(const Batch& batch) override;
  int64_t num_classes() const override { return num_classes_; }
  // The pyramid and the RPN head's maps (the RoI stage depends on the proposals).
  std::vector<at::Tensor> forward_network(const at::Tensor& images) override;
  DuplicateRemovalConfig* duplicate_removal() override { return &roi_head_->test_cfg().nms; }
  bool supports_inference_dtype() const override { return true; }

  RegionProposalNetworkImpl& rpn() { return *rpn_; }
  StandardRoIHeadImpl& roi_head() { return *roi_head_; }
  std::vector<at::Tensor> extract_features(const at::Tensor& images);

 private:
  bool frozen_detector() const;

  int64_t num_classes_;
  std::shared_ptr<Backbone> backbone_;
  std::shared_ptr<Neck> neck_;
  RegionProposalNetwork rpn_;
  StandardRoIHead roi_head_;
  bool channels_last_;
};

// Config keys (model node): type, num_classes, backbone, neck, rpn (build_rpn), roi_head
// (build_standard_roi_head), channels_last (default true). Registered as "FasterRCNN".
std::shared_ptr<TwoStageDetector> build_faster_rcnn(const Config& cfg);

}  // namespace setdet
