#include "setdet/layers/fused_conv_norm.h"

#include <c10/core/GradMode.h>

namespace setdet {

FusedConvNorm::FusedConvNorm(const torch::nn::Conv2dImpl& conv, const at::Tensor& scale,
                             const at::Tensor& shift, std::vector<at::Tensor> sources) {
  const auto& o = conv.options;
  const int64_t out = o.out_channels();
  TORCH_CHECK(scale.dim() == 1 && scale.size(0) == out && shift.dim() == 1 && shift.size(0) == out,
              "FusedConvNorm: scale and shift must be [", out, "], got ", scale.sizes(), " and ",
              shift.sizes());
  TORCH_CHECK(c10::get_if<torch::ExpandingArray<2>>(&o.padding()) != nullptr,
              "FusedConvNorm: only explicit (numeric) conv padding can be folded");
  TORCH_CHECK(c10::get_if<torch::enumtype::kZeros>(&o.padding_mode()) != nullptr,
              "FusedConvNorm: only zero padding_mode can be folded");
  at::NoGradGuard no_grad;
  weight_ = (conv.weight * scale.view({-1, 1, 1, 1})).contiguous();
  bias_ = conv.bias.defined() ? at::addcmul(shift, conv.bias, scale) : shift.clone();
  const auto& pad = c10::get<torch::ExpandingArray<2>>(o.padding());
  stride_.assign(o.stride()->begin(), o.stride()->end());
  padding_.assign(pad->begin(), pad->end());
  dilation_.assign(o.dilation()->begin(), o.dilation()->end());
  groups_ = o.groups();
  sources_ = std::move(sources);
  sources_.push_back(conv.weight);
  if (conv.bias.defined()) sources_.push_back(conv.bias);
  for (const auto& t : sources_) versions_.push_back(t._version());
  if (weight_.device().is_cpu()) {
    onednn_ = OneDnnConv2d(weight_, bias_, stride_, padding_, dilation_, groups_);
  }
}

bool FusedConvNorm::stale() const {
  for (size_t i = 0; i < sources_.size(); ++i) {
    if (sources_[i]._version() != versions_[i]) return true;
  }
  return false;
}

at::Tensor FusedConvNorm::operator()(const at::Tensor& x, bool relu,
                                     const at::Tensor& residual) const {
  TORCH_INTERNAL_ASSERT(defined(), "FusedConvNorm used before fusion");
  if (onednn_.defined() && OneDnnConv2d::applicable(x)) return onednn_(x, relu, residual);
  at::Tensor y = at::conv2d(x, weight_, bias_, stride_, padding_, dilation_, groups_);
  if (residual.defined()) y += residual;
  return relu ? y.relu_() : y;
}

int64_t fuse_for_inference(torch::nn::Module& root) {
  int64_t n = 0;
  for (const auto& m : root.modules(/*include_self=*/true)) {
    if (auto* f = dynamic_cast<InferenceFusable*>(m.get())) {
      TORCH_CHECK(!m->is_training(), "fuse_for_inference: module ", m->name(),
                  " is in training mode; call eval() first");
      f->fuse_for_inference();
      ++n;
    }
  }
  return n;
}

}  // namespace setdet
