// The part every single-stage detector shares (MMDetection's SingleStageDetector): backbone ->
// neck -> dense head, registered under torchvision's names (backbone.body, backbone.fpn, head) so
// torchvision state_dicts map by name, and the feature pyramid computed channels-last when asked.
// FCOS (and ATSS, FCOS_PSS) and RetinaNet derive from it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "setdet/models/backbones/backbone.h"
#include "setdet/models/detector.h"
#include "setdet/models/necks/fpn.h"

namespace setdet {

class SingleStageDetector : public DetectorModel {
 public:
  int64_t num_classes() const override { return num_classes_; }
  Backbone& backbone() { return *backbone_; }
  Neck& neck() { return *neck_; }
  // A [B, 3, H, W] batch in the layout the backbone runs in (channels-last when configured).
  at::Tensor input_layout(const at::Tensor& images) const;

 protected:
  // `name` (e.g. "FCOS") prefixes the errors; `head` is registered as "head". Throws when
  // num_classes <= 0 or a part is missing.
  SingleStageDetector(const std::string& name, int64_t num_classes,
                      std::shared_ptr<Backbone> backbone, std::shared_ptr<Neck> neck,
                      std::shared_ptr<torch::nn::Module> head, bool channels_last);

  // Backbone + neck on input_layout(images): the pyramid.
  std::vector<at::Tensor> extract_features(const at::Tensor& images);

  std::string name_;
  int64_t num_classes_;
  std::shared_ptr<Backbone> backbone_;
  std::shared_ptr<Neck> neck_;
  bool channels_last_;
};

}  // namespace setdet
