#include "setdet/models/dense_heads/fcos_head.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include <cmath>

#include "setdet/layers/float32_group_norm.h"
#include "setdet/models/dense_heads/head_conv.h"

namespace setdet {
namespace {

torch::nn::Sequential make_tower(const FCOSHeadOptions& o) {
  torch::nn::Sequential tower;
  for (int64_t i = 0; i < o.num_convs(); ++i) {
    tower->push_back(head_conv3x3(i == 0 ? o.in_channels() : o.channels(), o.channels()));
    tower->push_back(
        Float32GroupNorm(torch::nn::GroupNormOptions(o.gn_groups(), o.channels())));
    tower->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(/*inplace=*/true)));
  }
  return tower;
}

}  // namespace

FCOSHeadImpl::FCOSHeadImpl(const FCOSHeadOptions& options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.in_channels() > 0 && o.channels() > 0,
              "FCOSHead: in_channels and channels must be positive, got ", o.in_channels(), " and ",
              o.channels());
  TORCH_CHECK(o.num_classes() > 0, "FCOSHead: num_classes must be positive, got ", o.num_classes());
  TORCH_CHECK(!o.strides().empty(), "FCOSHead: needs at least one level");
  TORCH_CHECK(o.num_convs() >= 0, "FCOSHead: num_convs must be >= 0, got ", o.num_convs());
  TORCH_CHECK(o.gn_groups() > 0 && o.channels() % o.gn_groups() == 0, "FCOSHead: gn_groups (",
              o.gn_groups(), ") must be positive and divide channels (", o.channels(), ")");
  TORCH_CHECK(o.prior_prob() > 0 && o.prior_prob() < 1,
              "FCOSHead: prior_prob must be in (0, 1), got ", o.prior_prob());
  TORCH_CHECK(o.num_convs() > 0 || o.in_channels() == o.channels(),
              "FCOSHead: with num_convs 0, channels must equal in_channels");

  auto cls_head = register_module("classification_head", std::make_shared<torch::nn::Module>());
  auto reg_head = register_module("regression_head", std::make_shared<torch::nn::Module>());
  cls_tower_ = cls_head->register_module("conv", make_tower(o));
  cls_logits_ = cls_head->register_module("cls_logits", head_conv3x3(o.channels(), o.num_classes()));
  torch::nn::init::constant_(cls_logits_->bias, -std::log((1.0 - o.prior_prob()) / o.prior_prob()));
  reg_tower_ = reg_head->register_module("conv", make_tower(o));
  bbox_reg_ = reg_head->register_module("bbox_reg", head_conv3x3(o.channels(), 4));
  bbox_ctrness_ = reg_head->register_module("bbox_ctrness", head_conv3x3(o.channels(), 1));
  scales_ = register_parameter("scales", torch::ones({static_cast<int64_t>(o.strides().size())}));
}

DenseHeadOutputs FCOSHeadImpl::forward(const std::vector<at::Tensor>& features) {
  const auto& strides = options_.strides();
  TORCH_CHECK(features.size() == strides.size(), "FCOSHead: expected ", strides.size(),
              " feature maps, got ", features.size());
  DenseHeadOutputs out;
  auto& cls = out["cls_logits"];
  auto& dist = out["bbox_distances"];
  auto& ctr = out["centerness"];
  for (size_t l = 0; l < features.size(); ++l) {
    const at::Tensor& x = features[l];
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels(), "FCOSHead: level ", l,
                " must be [B, ", options_.in_channels(), ", H, W], got ", x.sizes());
    cls.push_back(cls_logits_(options_.num_convs() > 0 ? cls_tower_->forward(x) : x));
    const at::Tensor reg_feat = options_.num_convs() > 0 ? reg_tower_->forward(x) : x;
    const at::Tensor d = bbox_reg_(reg_feat) * scales_[l];
    dist.push_back(options_.norm_on_bbox() ? d.relu() * static_cast<double>(strides[l]) : d.exp());
    ctr.push_back(bbox_ctrness_(reg_feat));
    if (output_reg_features_) out["reg_features"].push_back(reg_feat);
  }
  return out;
}

PointSet FCOSHeadImpl::points(const std::vector<std::array<int64_t, 2>>& sizes,
                              const at::TensorOptions& options) const {
  const auto& strides = options_.strides();
  TORCH_CHECK(sizes.size() == strides.size(), "FCOSHead: expected ", strides.size(),
              " level sizes, got ", sizes.size());
  PointSet ps;
  std::vector<at::Tensor> per_level;
  for (size_t l = 0; l < sizes.size(); ++l) {
    const double s = static_cast<double>(strides[l]);
    const double off = options_.center_offset() * s;
    const at::Tensor xs = at::arange(sizes[l][1], options.dtype(at::kFloat)) * s + off;
    const at::Tensor ys = at::arange(sizes[l][0], options.dtype(at::kFloat)) * s + off;
    const auto grid = at::meshgrid({ys, xs}, "ij");
    per_level.push_back(at::stack({grid[1].reshape(-1), grid[0].reshape(-1)}, 1));
    ps.strides.push_back(strides[l]);
    ps.num_points.push_back(sizes[l][0] * sizes[l][1]);
  }
  ps.points = at::cat(per_level, 0);
  return ps;
}

namespace {

DenseHeadFactory build_fcos_head(const Config& cfg) {
  cfg.check_keys({"type", "channels", "num_convs", "gn_groups", "prior_prob", "norm_on_bbox",
                  "center_offset"});
  const auto num_convs = cfg.get<int64_t>("num_convs", 4);
  const auto gn_groups = cfg.get<int64_t>("gn_groups", 32);
  const auto prior_prob = cfg.get<double>("prior_prob", 0.01);
  const auto norm_on_bbox = cfg.get<bool>("norm_on_bbox", true);
  const auto center_offset = cfg.get<double>("center_offset", 0.5);
  const auto channels = cfg.get<int64_t>("channels", -1);
  SETDET_CHECK(num_convs >= 0, cfg.where(), ".num_convs: expected >= 0, got ", num_convs);
  SETDET_CHECK(prior_prob > 0 && prior_prob < 1, cfg.where(),
               ".prior_prob: expected a value in (0, 1), got ", prior_prob);
  SETDET_CHECK(cfg.has("channels") ? channels > 0 : true, cfg.where(),
               ".channels: expected > 0, got ", channels);
  return [=](const std::vector<ShapeSpec>& in, int64_t num_classes) -> std::shared_ptr<DenseHead> {
    SETDET_CHECK(!in.empty(), cfg.where(), ": the head needs at least one input level");
    std::vector<int64_t> strides;
    for (const auto& s : in) {
      SETDET_CHECK(s.channels == in.front().channels, cfg.where(),
                   ": FCOSHead needs the same channels on every level, got ", s.channels, " and ",
                   in.front().channels);
      strides.push_back(s.stride);
    }
    FCOSHeadOptions opts(in.front().channels, num_classes, strides);
    opts.channels(channels > 0 ? channels : in.front().channels)
        .num_convs(num_convs)
        .gn_groups(gn_groups)
        .prior_prob(prior_prob)
        .norm_on_bbox(norm_on_bbox)
        .center_offset(center_offset);
    SETDET_CHECK(opts.channels() % gn_groups == 0 && gn_groups > 0, cfg.where(),
                 ".gn_groups: expected a positive divisor of the tower width ", opts.channels(),
                 ", got ", gn_groups);
    SETDET_CHECK(num_convs > 0 || opts.channels() == opts.in_channels(), cfg.where(),
                 ".channels: with num_convs 0 it must equal the neck's ", opts.in_channels());
    return std::make_shared<FCOSHeadImpl>(opts);
  };
}

}  // namespace

SETDET_REGISTER(DenseHeadRegistry, "FCOSHead", build_fcos_head);

}  // namespace setdet
