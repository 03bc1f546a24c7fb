#include "setdet/models/dense_heads/retina_head.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include <cmath>

#include "setdet/models/dense_heads/head_conv.h"

namespace setdet {
namespace {

// num_convs blocks named "N", each a Sequential of "0" (conv) and "1" (ReLU), as torchvision's
// Sequential of Conv2dNormActivation(norm_layer=None).
std::vector<torch::nn::Sequential> make_tower(const RetinaHeadOptions& o,
                                              torch::nn::ModuleList list) {
  std::vector<torch::nn::Sequential> blocks;
  for (int64_t i = 0; i < o.num_convs(); ++i) {
    torch::nn::Sequential block;
    block->push_back(head_conv3x3(i == 0 ? o.in_channels() : o.channels(), o.channels()));
    block->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(/*inplace=*/true)));
    list->push_back(block.ptr());
    blocks.push_back(block);
  }
  return blocks;
}

at::Tensor run_tower(std::vector<torch::nn::Sequential>& tower, at::Tensor x) {
  for (auto& block : tower) x = block->forward(x);
  return x;
}

}  // namespace

RetinaHeadImpl::RetinaHeadImpl(const RetinaHeadOptions& options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.in_channels() > 0 && o.channels() > 0,
              "RetinaHead: in_channels and channels must be positive, got ", o.in_channels(),
              " and ", o.channels());
  TORCH_CHECK(o.num_classes() > 0, "RetinaHead: num_classes must be positive, got ",
              o.num_classes());
  TORCH_CHECK(o.num_anchors() > 0, "RetinaHead: num_anchors must be positive, got ",
              o.num_anchors());
  TORCH_CHECK(!o.strides().empty(), "RetinaHead: needs at least one level");
  TORCH_CHECK(o.num_convs() >= 0, "RetinaHead: num_convs must be >= 0, got ", o.num_convs());
  TORCH_CHECK(o.num_convs() > 0 || o.in_channels() == o.channels(),
              "RetinaHead: with num_convs 0, channels must equal in_channels");
  TORCH_CHECK(o.prior_prob() > 0 && o.prior_prob() < 1,
              "RetinaHead: prior_prob must be in (0, 1), got ", o.prior_prob());
  auto cls_head = register_module("classification_head", std::make_shared<torch::nn::Module>());
  auto reg_head = register_module("regression_head", std::make_shared<torch::nn::Module>());
  cls_tower_ = make_tower(o, cls_head->register_module("conv", torch::nn::ModuleList()));
  cls_logits_ = cls_head->register_module("cls_logits",
                                          head_conv3x3(o.channels(), o.num_anchors() * o.num_classes()));
  torch::nn::init::constant_(cls_logits_->bias, -std::log((1.0 - o.prior_prob()) / o.prior_prob()));
  reg_tower_ = make_tower(o, reg_head->register_module("conv", torch::nn::ModuleList()));
  bbox_reg_ = reg_head->register_module("bbox_reg", head_conv3x3(o.channels(), o.num_anchors() * 4));
}

DenseHeadOutputs RetinaHeadImpl::forward(const std::vector<at::Tensor>& features) {
  TORCH_CHECK(features.size() == options_.strides().size(), "RetinaHead: expected ",
              options_.strides().size(), " feature maps, got ", features.size());
  DenseHeadOutputs out;
  auto& cls = out["cls_logits"];
  auto& reg = out["bbox_deltas"];
  for (size_t l = 0; l < features.size(); ++l) {
    const at::Tensor& x = features[l];
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels(), "RetinaHead: level ", l,
                " must be [B, ", options_.in_channels(), ", H, W], got ", x.sizes());
    cls.push_back(cls_logits_(run_tower(cls_tower_, x)));
    reg.push_back(bbox_reg_(run_tower(reg_tower_, x)));
  }
  return out;
}

namespace {

DenseHeadFactory build_retina_head(const Config& cfg) {
  cfg.check_keys({"type", "channels", "num_convs", "prior_prob", "num_anchors"});
  const auto num_convs = cfg.get<int64_t>("num_convs", 4);
  const auto prior_prob = cfg.get<double>("prior_prob", 0.01);
  const auto channels = cfg.get<int64_t>("channels", -1);
  const auto num_anchors = cfg.get<int64_t>("num_anchors", 9);
  SETDET_CHECK(num_convs >= 0, cfg.where(), ".num_convs: expected >= 0, got ", num_convs);
  SETDET_CHECK(prior_prob > 0 && prior_prob < 1, cfg.where(),
               ".prior_prob: expected a value in (0, 1), got ", prior_prob);
  SETDET_CHECK(!cfg.has("channels") || channels > 0, cfg.where(), ".channels: expected > 0, got ",
               channels);
  SETDET_CHECK(num_anchors > 0, cfg.where(), ".num_anchors: expected > 0, got ", num_anchors);
  return [=](const std::vector<ShapeSpec>& in, int64_t num_classes) -> std::shared_ptr<DenseHead> {
    SETDET_CHECK(!in.empty(), cfg.where(), ": the head needs at least one input level");
    std::vector<int64_t> strides;
    for (const auto& s : in) {
      SETDET_CHECK(s.channels == in.front().channels, cfg.where(),
                   ": RetinaHead needs the same channels on every level, got ", s.channels, " and ",
                   in.front().channels);
      strides.push_back(s.stride);
    }
    RetinaHeadOptions opts(in.front().channels, num_classes, num_anchors, strides);
    opts.channels(channels > 0 ? channels : in.front().channels)
        .num_convs(num_convs)
        .prior_prob(prior_prob);
    SETDET_CHECK(num_convs > 0 || opts.channels() == opts.in_channels(), cfg.where(),
                 ".channels: with num_convs 0 it must equal the neck's ", opts.in_channels());
    return std::make_shared<RetinaHeadImpl>(opts);
  };
}

}  // namespace

SETDET_REGISTER(DenseHeadRegistry, "RetinaHead", build_retina_head);

}  // namespace setdet
