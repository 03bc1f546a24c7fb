#include "setdet/models/necks/fpn.h"

#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>

namespace setdet {
namespace {

namespace F = torch::nn::functional;

PackedConv2d make_conv(int64_t in, int64_t out, int64_t k, int64_t stride) {
  PackedConv2d c(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2));
  // torchvision FeaturePyramidNetwork / LastLevelP6P7 init
  torch::nn::init::kaiming_uniform_(c->weight, /*a=*/1.0);
  torch::nn::init::zeros_(c->bias);
  return c;
}

}  // namespace

FPNImpl::FPNImpl(const FPNOptions& options) : options_(options) {
  const auto& in = options_.in_shapes();
  const int64_t c = options_.out_channels();
  TORCH_CHECK(!in.empty(), "FPN: needs at least one input level");
  TORCH_CHECK(c > 0, "FPN: out_channels must be positive, got ", c);
  const int64_t n_in = static_cast<int64_t>(in.size());
  const int64_t n_extra = options_.num_outs() - n_in;
  TORCH_CHECK(n_extra >= 0 && n_extra <= 2, "FPN: num_outs must be in [", n_in, ", ", n_in + 2,
              "] for ", n_in, " input levels, got ", options_.num_outs());
  TORCH_CHECK(options_.extra_input() == "p5" || options_.extra_input() == "c5",
              "FPN: extra_input must be 'p5' or 'c5', got '", options_.extra_input(), "'");
  TORCH_CHECK(options_.extra_type() == "conv" || options_.extra_type() == "maxpool",
              "FPN: extra_type must be 'conv' or 'maxpool', got '", options_.extra_type(), "'");
  TORCH_CHECK(options_.extra_type() == "conv" || n_extra <= 1,
              "FPN: extra_type 'maxpool' adds one level, num_outs must be at most ", n_in + 1,
              ", got ", options_.num_outs());
  max_pool_extra_ = options_.extra_type() == "maxpool" && n_extra == 1;

  inner_blocks_ = register_module("inner_blocks", torch::nn::ModuleList());
  layer_blocks_ = register_module("layer_blocks", torch::nn::ModuleList());
  for (const auto& s : in) {
    TORCH_CHECK(s.channels > 0, "FPN: input channels must be positive, got ", s.channels);
    inner_convs_.push_back(make_conv(s.channels, c, 1, 1));
    layer_convs_.push_back(make_conv(c, c, 3, 1));
    inner_blocks_->push_back(torch::nn::Sequential(inner_convs_.back()));
    layer_blocks_->push_back(torch::nn::Sequential(layer_convs_.back()));
  }
  if (n_extra > 0 && !max_pool_extra_) {
    auto extra = register_module("extra_blocks", std::make_shared<torch::nn::Module>());
    const int64_t p6_in = options_.extra_input() == "c5" ? in.back().channels : c;
    p6_ = extra->register_module("p6", make_conv(p6_in, c, 3, 2));
    if (n_extra > 1) p7_ = extra->register_module("p7", make_conv(c, c, 3, 2));
  }
}

std::vector<at::Tensor> FPNImpl::forward(const std::vector<at::Tensor>& features) {
  const size_t n = inner_convs_.size();
  TORCH_CHECK(features.size() == n, "FPN: expected ", n, " feature maps, got ", features.size());
  std::vector<at::Tensor> outs(n);
  at::Tensor last = inner_convs_[n - 1](features[n - 1]);
  outs[n - 1] = layer_convs_[n - 1](last);
  for (int64_t i = static_cast<int64_t>(n) - 2; i >= 0; --i) {
    const at::Tensor lateral = inner_convs_[i](features[i]);
    const at::Tensor top_down =
        F::interpolate(last, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{lateral.size(2), lateral.size(3)})
                                 .mode(torch::kNearest));
    last = lateral + top_down;
    outs[i] = layer_convs_[i](last);
  }
  if (max_pool_extra_) outs.push_back(at::max_pool2d(outs.back(), {1, 1}, {2, 2}));
  if (p6_) {
    const at::Tensor p6 = p6_(options_.extra_input() == "c5" ? features.back() : outs.back());
    outs.push_back(p6);
    if (p7_) outs.push_back(p7_(torch::relu(p6)));
  }
  return outs;
}

std::vector<ShapeSpec> FPNImpl::output_shape() const {
  std::vector<ShapeSpec> out;
  for (const auto& s : options_.in_shapes()) out.push_back({options_.out_channels(), s.stride});
  int64_t stride = options_.in_shapes().back().stride;
  for (int64_t i = static_cast<int64_t>(out.size()); i < options_.num_outs(); ++i) {
    stride *= 2;
    out.push_back({options_.out_channels(), stride});
  }
  return out;
}

SETDET_REGISTER(NeckRegistry, "FPN", [](const Config& cfg) -> NeckFactory {
  cfg.check_keys({"type", "out_channels", "num_outs", "extra_input", "extra_type"});
  const auto out_channels = cfg.get<int64_t>("out_channels", 256);
  const auto num_outs = cfg.get<int64_t>("num_outs", 5);
  const auto extra_input = cfg.get<std::string>("extra_input", "p5");
  const auto extra_type = cfg.get<std::string>("extra_type", "conv");
  SETDET_CHECK(extra_type == "conv" || extra_type == "maxpool", cfg.where(),
               ".extra_type: expected 'conv' or 'maxpool', got '", extra_type, "'");
  SETDET_CHECK(out_channels > 0, cfg.where(), ".out_channels: expected > 0, got ", out_channels);
  SETDET_CHECK(extra_input == "p5" || extra_input == "c5", cfg.where(),
               ".extra_input: expected 'p5' or 'c5', got '", extra_input, "'");
  return [=](const std::vector<ShapeSpec>& in_shapes) -> std::shared_ptr<Neck> {
    const auto n_in = static_cast<int64_t>(in_shapes.size());
    const int64_t max_extra = extra_type == "maxpool" ? 1 : 2;
    SETDET_CHECK(num_outs >= n_in && num_outs <= n_in + max_extra, cfg.where(),
                 ".num_outs: expected a value in [", n_in, ", ", n_in + max_extra,
                 "] for a backbone with ", n_in, " outputs and extra_type ", extra_type, ", got ",
                 num_outs);
    return std::make_shared<FPNImpl>(FPNOptions(in_shapes, out_channels)
                                         .num_outs(num_outs)
                                         .extra_input(extra_input)
                                         .extra_type(extra_type));
  };
});

}  // namespace setdet
