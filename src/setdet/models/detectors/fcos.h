// FCOS (Tian et al. 2019): backbone -> neck -> FCOSHead, trained with FCOSAssigner targets, focal
// loss, IoU-family box loss and centre-ness BCE; inference as torchvision's FCOS
// postprocess_detections. Module names mirror torchvision's FCOS (backbone.body, backbone.fpn,
// head.classification_head, head.regression_head) so its state_dict maps by name.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "setdet/assign/fcos_assigner.h"
#include "setdet/losses/loss.h"
#include "setdet/models/dense_heads/fcos_head.h"
#include "setdet/models/detectors/single_stage.h"
#include "setdet/models/post_processing.h"

namespace setdet {

// score_thr applies to sqrt(sigmoid(cls) * sigmoid(ctr)) per level; nms defaults to class-aware
// NMS 0.6 (torchvision's FCOS).
struct FCOSTestConfig : PostProcessConfig {
  FCOSTestConfig() { nms.iou_threshold = 0.6; }
  // true: points at torchvision's FCOS anchor centres (level stride = padded size // grid size
  // per axis, see image_over_grid_points in structures/anchors.h), which differ from the nominal
  // strides on P6/P7 when the input is not a multiple of 128.
  bool image_over_grid_points = false;
};

struct FCOSLossConfig {
  std::shared_ptr<Loss> cls, bbox, centerness;
  // true (FCOS authors' code, mmdet): box loss weighted by the centre-ness targets and divided by
  // their sum; false (torchvision): divided by the number of positives.
  bool centerness_weighted_bbox = true;
};

// Per level [B, K, H, W] -> [B, sum(H * W), K] (level-major, then row-major y, x: PointSet order).
at::Tensor flatten_levels(const std::vector<at::Tensor>& maps, int64_t k);

class FCOSDetector : public SingleStageDetector {
 public:
  FCOSDetector(int64_t num_classes, std::shared_ptr<Backbone> backbone, std::shared_ptr<Neck> neck,
               std::shared_ptr<FCOSHeadImpl> head, std::shared_ptr<PointAssigner> assigner,
               FCOSLossConfig loss, FCOSTestConfig test_cfg, bool channels_last = false);

  // "loss_cls", "loss_bbox", "loss_centerness" plus "num_pos" (not a loss: no "loss" prefix).
  std::map<std::string, at::Tensor> losses(const Batch& batch) override;
  std::vector<Detections> predict(const Batch& batch) override;

  // Raw head outputs for an image batch: per level cls_logits, bbox_distances, centerness.
  DenseHeadOutputs forward(const at::Tensor& images);
  std::vector<at::Tensor> forward_network(const at::Tensor& images) override {
    return flatten_outputs(forward(images));
  }

  FCOSHeadImpl& head() { return *head_; }
  const FCOSTestConfig& test_cfg() const { return test_cfg_; }
  DuplicateRemovalConfig* duplicate_removal() override { return &test_cfg_.nms; }
  bool supports_inference_dtype() const override { return true; }

 protected:
  // The points of these level sizes, cached; safe under concurrent predict() calls (the API's
  // Detector::detect runs one model from several threads).
  PointSet points_for(const std::vector<at::Tensor>& level_maps);
  // The FCOS losses of losses() for head outputs `out` and the assigner's targets `t`.
  std::map<std::string, at::Tensor> one_to_many_losses(const DenseHeadOutputs& out,
                                                       const PointTargets& t);

  std::shared_ptr<FCOSHeadImpl> head_;
  std::shared_ptr<PointAssigner> assigner_;
  FCOSLossConfig loss_;
  FCOSTestConfig test_cfg_;
  std::vector<std::array<int64_t, 2>> cached_sizes_;
  PointSet cached_points_;
  std::mutex cached_points_mutex_;
};

// Config keys (model node): type, num_classes, backbone, neck, head, assigner, loss_cls,
// loss_bbox, loss_centerness, centerness_weighted_bbox, test_cfg {score_thr, pre_nms_top_k,
// nms | nms_thr, max_per_img, image_over_grid_points}, channels_last (default true: NHWC
// activations, about 1.5-2x faster training on CPU with LibTorch 1.13's oneDNN convolutions).
// Registered in DetectorRegistry as "FCOS".
std::shared_ptr<FCOSDetector> build_fcos(const Config& cfg);

// The parts build_fcos reads, for detectors built on FCOS: `extra_keys` are accepted besides
// FCOS's keys; without an `assigner` key the assigner is `{type: <default_assigner>}`.
struct FCOSParts {
  int64_t num_classes = 0;
  std::shared_ptr<Backbone> backbone;
  std::shared_ptr<Neck> neck;
  std::shared_ptr<FCOSHeadImpl> head;
  std::shared_ptr<PointAssigner> assigner;
  FCOSLossConfig loss;
  FCOSTestConfig test_cfg;
  bool channels_last = true;
};
FCOSParts build_fcos_parts(const Config& cfg, const std::vector<std::string>& extra_keys = {},
                           const std::string& default_assigner = "FCOSAssigner");

}  // namespace setdet
