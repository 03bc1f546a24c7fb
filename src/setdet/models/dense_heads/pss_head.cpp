#include "setdet/models/dense_heads/pss_head.h"

#include <torch/nn/modules/activation.h>

#include "setdet/layers/float32_group_norm.h"
#include "setdet/models/dense_heads/head_conv.h"

namespace setdet {

PositiveSampleSelectorImpl::PositiveSampleSelectorImpl(const PositiveSampleSelectorOptions& options)
    : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.in_channels() > 0 && o.channels() > 0,
              "PositiveSampleSelector: in_channels and channels must be positive, got ",
              o.in_channels(), " and ", o.channels());
  TORCH_CHECK(o.num_convs() >= 0, "PositiveSampleSelector: num_convs must be >= 0, got ",
              o.num_convs());
  TORCH_CHECK(o.gn_groups() == 0 || (o.gn_groups() > 0 && o.channels() % o.gn_groups() == 0),
              "PositiveSampleSelector: gn_groups (", o.gn_groups(),
              ") must be 0 or a positive divisor of channels (", o.channels(), ")");
  TORCH_CHECK(o.num_convs() > 0 || o.channels() == o.in_channels(),
              "PositiveSampleSelector: with num_convs 0, channels must equal in_channels");
  torch::nn::Sequential tower;
  for (int64_t i = 0; i < o.num_convs(); ++i) {
    tower->push_back(head_conv3x3(i == 0 ? o.in_channels() : o.channels(), o.channels()));
    if (o.gn_groups() > 0) {
      tower->push_back(
          Float32GroupNorm(torch::nn::GroupNormOptions(o.gn_groups(), o.channels())));
    }
    tower->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(/*inplace=*/true)));
  }
  tower_ = register_module("conv", tower);
  // N(0, 0.01) weights, zero bias: the PSS logits start at sigma = 0.5
  pss_logits_ = register_module("pss_logits", head_conv3x3(o.channels(), 1));
}

std::vector<at::Tensor> PositiveSampleSelectorImpl::forward(
    const std::vector<at::Tensor>& reg_features) {
  std::vector<at::Tensor> out;
  out.reserve(reg_features.size());
  for (size_t l = 0; l < reg_features.size(); ++l) {
    const at::Tensor& f = reg_features[l];
    TORCH_CHECK(f.dim() == 4 && f.size(1) == options_.in_channels(),
                "PositiveSampleSelector: level ", l, " must be [B, ", options_.in_channels(),
                ", H, W], got ", f.sizes());
    const at::Tensor x = options_.stop_gradient() ? f.detach() : f;
    out.push_back(pss_logits_(options_.num_convs() > 0 ? tower_->forward(x) : x));
  }
  return out;
}

}  // namespace setdet
