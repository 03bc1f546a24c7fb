#include "setdet/models/detectors/two_stage.h"

#include <torch/types.h>
#include <torch/utils.h>

#include "setdet/engine/autocast.h"
#include "setdet/models/dense_heads/fcos_head.h"

namespace setdet {

TwoStageDetector::TwoStageDetector(int64_t num_classes, std::shared_ptr<Backbone> backbone,
                                   std::shared_ptr<Neck> neck, RegionProposalNetwork rpn,
                                   StandardRoIHead roi_head, bool channels_last)
    : num_classes_(num_classes),
      backbone_(std::move(backbone)),
      neck_(std::move(neck)),
      rpn_(std::move(rpn)),
      roi_head_(std::move(roi_head)),
      channels_last_(channels_last) {
  TORCH_CHECK(num_classes_ > 0, "FasterRCNN: num_classes must be positive, got ", num_classes_);
  TORCH_CHECK(backbone_ && neck_ && !rpn_.is_empty() && !roi_head_.is_empty(),
              "FasterRCNN: backbone, neck, rpn and roi_head are required");
  TORCH_CHECK(roi_head_->num_classes() == num_classes_, "FasterRCNN: the RoI head has ",
              roi_head_->num_classes(), " classes, the detector ", num_classes_);
  auto container = register_module("backbone", std::make_shared<torch::nn::Module>());
  container->register_module("body", backbone_);
  container->register_module("fpn", neck_);
  register_module("rpn", rpn_);
  register_module("roi_heads", roi_head_);
  if (frozen_detector()) {
    // Sec. 4.3 of Relation Networks: only the duplicate-removal network learns.
    for (auto& p : parameters()) p.set_requires_grad(false);
    for (auto& p : roi_head_->dedup()->parameters()) p.set_requires_grad(true);
  }
}

bool TwoStageDetector::frozen_detector() const {
  return roi_head_->trains_dedup_only();
}

std::vector<at::Tensor> TwoStageDetector::extract_features(const at::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3,
              "FasterRCNN: images must be [B, 3, H, W], got ", images.sizes());
  const at::Tensor x = channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
  if (const auto dtype = network_autocast()) {  // bfloat16 inference: float32 maps for the rest
    const AutocastGuard autocast(dtype, images.device().type());
    return to_float32(neck_->forward(backbone_->forward(x)));
  }
  return neck_->forward(backbone_->forward(x));
}

std::vector<at::Tensor> TwoStageDetector::forward_network(const at::Tensor& images) {
  std::vector<at::Tensor> maps = extract_features(images);
  const DenseHeadOutputs rpn_maps = rpn_->head().forward(maps);
  for (const auto& [name, levels] : rpn_maps) maps.insert(maps.end(), levels.begin(), levels.end());
  return maps;
}

std::map<std::string, at::Tensor> TwoStageDetector::losses(const Batch& batch) {
  TORCH_CHECK(batch.images.defined(), "FasterRCNN::losses: batch.images is undefined");
  TORCH_CHECK(batch.size() == batch.images.size(0), "FasterRCNN::losses: ", batch.images.size(0),
              " images but ", batch.size(), " metas");
  if (frozen_detector()) {
    std::vector<at::Tensor> features;
    RPNOutput proposals;
    {
      // eval mode: no BatchNorm statistics updates, test-time proposals
      torch::NoGradGuard no_grad;
      const bool was_training = is_training();
      backbone_->eval();
      neck_->eval();
      rpn_->eval();
      features = extract_features(batch.images);
      proposals = rpn_->forward(features, batch, /*with_losses=*/false);
      backbone_->train(was_training);
      neck_->train(was_training);
      rpn_->train(was_training);
    }
    return roi_head_->dedup_losses(features, proposals.proposals, batch);
  }
  const std::vector<at::Tensor> features = extract_features(batch.images);
  RPNOutput rpn_out = rpn_->forward(features, batch, /*with_losses=*/true);
  std::map<std::string, at::Tensor> out = roi_head_->losses(features, rpn_out.proposals, batch);
  for (auto& [name, value] : rpn_out.losses) out[name] = value;
  return out;
}

std::vector<Detections> TwoStageDetector::predict(const Batch& batch) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(batch.images.defined(), "FasterRCNN::predict: batch.images is undefined");
  TORCH_CHECK(batch.size() == batch.images.size(0), "FasterRCNN::predict: ", batch.images.size(0),
              " images but ", batch.size(), " metas");
  const std::vector<at::Tensor> features = extract_features(batch.images);
  const RPNOutput proposals = rpn_->forward(features, batch, /*with_losses=*/false);
  return roi_head_->predict(features, proposals.proposals, batch);
}

std::shared_ptr<TwoStageDetector> build_faster_rcnn(const Config& cfg) {
  cfg.check_keys({"type", "num_classes", "backbone", "neck", "rpn", "roi_head", "channels_last"});
  const auto num_classes = cfg.get<int64_t>("num_classes");
  SETDET_CHECK(num_classes > 0, cfg["num_classes"].where(), ": expected > 0, got ", num_classes);
  auto backbone = BackboneRegistry().build(cfg["backbone"]);
  auto neck = NeckRegistry().build(cfg["neck"])(backbone->output_shape());
  const auto shapes = neck->output_shape();
  auto rpn =
      build_rpn(cfg.has("rpn") ? cfg["rpn"] : Config::parse("{}", cfg.where() + ".rpn"), shapes);
  auto roi_head = build_standard_roi_head(
      cfg.has("roi_head") ? cfg["roi_head"] : Config::parse("{}", cfg.where() + ".roi_head"),
      num_classes, shapes);
  return std::make_shared<TwoStageDetector>(num_classes, backbone, neck, rpn, roi_head,
                                            cfg.get<bool>("channels_last", true));
}

SETDET_REGISTER(DetectorRegistry, "FasterRCNN",
                [](const Config& cfg) -> std::shared_ptr<DetectorModel> {
                  return build_faster_rcnn(cfg);
                });

}  // namespace setdet
