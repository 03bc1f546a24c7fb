#include "setdet/models/detectors/single_stage.h"

#include <c10/util/Exception.h>

#include <utility>

namespace setdet {

SingleStageDetector::SingleStageDetector(const std::string& name, int64_t num_classes,
                                         std::shared_ptr<Backbone> backbone,
                                         std::shared_ptr<Neck> neck,
                                         std::shared_ptr<torch::nn::Module> head,
                                         bool channels_last)
    : name_(name),
      num_classes_(num_classes),
      backbone_(std::move(backbone)),
      neck_(std::move(neck)),
      channels_last_(channels_last) {
  TORCH_CHECK(num_classes_ > 0, name_, ": num_classes must be positive, got ", num_classes_);
  TORCH_CHECK(backbone_ && neck_ && head, name_, ": backbone, neck and head are required");
  auto container = register_module("backbone", std::make_shared<torch::nn::Module>());
  container->register_module("body", backbone_);
  container->register_module("fpn", neck_);
  register_module("head", std::move(head));
}

at::Tensor SingleStageDetector::input_layout(const at::Tensor& images) const {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, name_,
              ": images must be [B, 3, H, W], got ", images.sizes());
  return channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
}

std::vector<at::Tensor> SingleStageDetector::extract_features(const at::Tensor& images) {
  return neck_->forward(backbone_->forward(input_layout(images)));
}

}  // namespace setdet
