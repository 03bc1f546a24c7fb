#include "setdet/layers/packed_conv2d.h"

#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace setdet {

void PackedConv2dImpl::fuse_for_inference() {
  TORCH_CHECK(!is_training(), "PackedConv2d::fuse_for_inference: call eval() first");
  const auto* pad = c10::get_if<torch::ExpandingArray<2>>(&options.padding());
  if (pad == nullptr || c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()) == nullptr ||
      !weight.device().is_cpu()) {
    unfuse();  // 'same' / 'valid' padding, other padding modes, other devices: torch's conv
    return;
  }
  packed_ = OneDnnConv2d(weight, bias, *options.stride(), **pad, *options.dilation(),
                         options.groups());
  versions_ = {weight._version(), bias.defined() ? bias._version() : 0};
}

void PackedConv2dImpl::unfuse() {
  packed_ = OneDnnConv2d();
  versions_.clear();
}

bool PackedConv2dImpl::packed_usable(const at::Tensor& x) const {
  // gradients wanted for the weights (eval mode under GradMode, e.g. saliency maps): torch's conv
  if (at::GradMode::is_enabled() && weight.requires_grad()) return false;
  return packed_.defined() && !is_training() && weight._version() == versions_[0] &&
         (!bias.defined() || bias._version() == versions_[1]) && OneDnnConv2d::applicable(x);
}

at::Tensor PackedConv2dImpl::forward(const at::Tensor& x) {
  return packed_usable(x) ? packed_(x) : torch::nn::Conv2dImpl::forward(x);
}

at::Tensor PackedConv2dImpl::forward_relu(const at::Tensor& x) {
  return packed_usable(x) ? packed_(x, /*relu=*/true) : torch::nn::Conv2dImpl::forward(x).relu_();
}

}  // namespace setdet
