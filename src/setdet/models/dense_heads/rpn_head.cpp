#include "setdet/models/dense_heads/rpn_head.h"

#include <torch/nn/init.h>

namespace setdet {
namespace {

PackedConv2d rpn_conv(int64_t in, int64_t out, int64_t k) {
  PackedConv2d c(torch::nn::Conv2dOptions(in, out, k).padding(k / 2));
  torch::nn::init::normal_(c->weight, 0.0, 0.01);
  torch::nn::init::zeros_(c->bias);
  return c;
}

}  // namespace

RPNHeadImpl::RPNHeadImpl(int64_t in_channels, int64_t num_anchors, std::vector<int64_t> strides)
    : in_channels_(in_channels), num_anchors_(num_anchors), strides_(std::move(strides)) {
  TORCH_CHECK(in_channels_ > 0, "RPNHead: in_channels must be positive, got ", in_channels_);
  TORCH_CHECK(num_anchors_ > 0, "RPNHead: num_anchors must be positive, got ", num_anchors_);
  TORCH_CHECK(!strides_.empty(), "RPNHead: needs at least one level");
  // torchvision 0.14: conv = Sequential(Conv2dNormActivation(norm_layer=None)) -> "conv.0.0"
  conv_ = rpn_conv(in_channels_, in_channels_, 3);
  register_module("conv", std::make_shared<torch::nn::Module>())
      ->register_module("0", std::make_shared<torch::nn::Module>())
      ->register_module("0", conv_);
  cls_logits_ = register_module("cls_logits", rpn_conv(in_channels_, num_anchors_, 1));
  bbox_pred_ = register_module("bbox_pred", rpn_conv(in_channels_, num_anchors_ * 4, 1));
}

DenseHeadOutputs RPNHeadImpl::forward(const std::vector<at::Tensor>& features) {
  TORCH_CHECK(features.size() == strides_.size(), "RPNHead: expected ", strides_.size(),
              " feature maps, got ", features.size());
  DenseHeadOutputs out;
  auto& obj = out["objectness"];
  auto& reg = out["bbox_deltas"];
  for (size_t l = 0; l < features.size(); ++l) {
    const at::Tensor& x = features[l];
    TORCH_CHECK(x.dim() == 4 && x.size(1) == in_channels_, "RPNHead: level ", l, " must be [B, ",
                in_channels_, ", H, W], got ", x.sizes());
    const at::Tensor t = at::relu(conv_(x));
    obj.push_back(cls_logits_(t));
    reg.push_back(bbox_pred_(t));
  }
  return out;
}

namespace {

DenseHeadFactory build_rpn_head(const Config& cfg) {
  cfg.check_keys({"type", "num_anchors"});
  const auto num_anchors = cfg.get<int64_t>("num_anchors", 3);
  SETDET_CHECK(num_anchors > 0, cfg.where(), ".num_anchors: expected > 0, got ", num_anchors);
  return [=](const std::vector<ShapeSpec>& in, int64_t) -> std::shared_ptr<DenseHead> {
    SETDET_CHECK(!in.empty(), cfg.where(), ": the RPN head needs at least one input level");
    std::vector<int64_t> strides;
    for (const auto& s : in) {
      SETDET_CHECK(s.channels == in.front().channels, cfg.where(),
                   ": RPNHead needs the same channels on every level, got ", s.channels, " and ",
                   in.front().channels);
      strides.push_back(s.stride);
    }
    return std::make_shared<RPNHeadImpl>(in.front().channels, num_anchors, strides);
  };
}

}  // namespace

SETDET_REGISTER(DenseHeadRegistry, "RPNHead", build_rpn_head);

}  // namespace setdet
