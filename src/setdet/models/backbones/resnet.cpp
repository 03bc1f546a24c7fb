#include "setdet/models/backbones/resnet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>

namespace setdet {
namespace {

namespace F = torch::nn::functional;

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).bias(false));
}

torch::nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride, NormKind norm,
                                      int64_t gn_groups) {
  torch::nn::Sequential seq;
  seq->push_back(conv(in, out, 1, stride));
  switch (norm) {
    case NormKind::kGroupNorm:
      seq->push_back(Float32GroupNorm(torch::nn::GroupNormOptions(gn_groups, out)));
      break;
    case NormKind::kFrozenBatchNorm:
      seq->push_back(FrozenBatchNorm2d(out));
      break;
    case NormKind::kSyncBatchNorm:
      seq->push_back(SyncBatchNorm(out));
      break;
    case NormKind::kBatchNorm:
      seq->push_back(torch::nn::BatchNorm2d(out));
      break;
  }
  return seq;
}

struct DepthSpec {
  bool bottleneck;
  std::array<int64_t, 4> blocks;
};

DepthSpec depth_spec(int64_t depth) {
  switch (depth) {
    case 18:
      return {false, {2, 2, 2, 2}};
    case 34:
      return {false, {3, 4, 6, 3}};
    case 50:
      return {true, {3, 4, 6, 3}};
    case 101:
      return {true, {3, 4, 23, 3}};
    case 152:
      return {true, {3, 8, 36, 3}};
    default:
      break;
  }
  TORCH_CHECK(false, "ResNet: depth must be one of 18, 34, 50, 101, 152, got ", depth);
}

}  // namespace

namespace {

// conv followed by a BatchNorm2d or SyncBatchNorm (same fields) in eval mode, as one conv.
template <typename BatchNorm>
FusedConvNorm fold_batch_norm(const torch::nn::Conv2dImpl& conv, const BatchNorm& bn) {
  TORCH_CHECK(bn.options.track_running_stats(),
              "ResNet: a BatchNorm2d without running statistics cannot be folded");
  at::NoGradGuard no_grad;
  const int64_t c = bn.options.num_features();
  const at::Tensor gamma = bn.options.affine() ? bn.weight : at::ones({c});
  const at::Tensor beta = bn.options.affine() ? bn.bias : at::zeros({c});
  const at::Tensor scale = gamma * (bn.running_var + bn.options.eps()).rsqrt();
  const at::Tensor shift = beta - bn.running_mean * scale;
  std::vector<at::Tensor> sources{bn.running_mean, bn.running_var};
  if (bn.options.affine()) {
    sources.push_back(bn.weight);
    sources.push_back(bn.bias);
  }
  return FusedConvNorm(conv, scale, shift, std::move(sources));
}

FusedConvNorm fold_frozen(const torch::nn::Conv2dImpl& conv, const FrozenBatchNorm2dImpl& f) {
  const auto [scale, shift] = f.scale_shift();
  return FusedConvNorm(conv, scale, shift, {f.weight, f.bias, f.running_mean, f.running_var});
}

}  // namespace

Norm2d::Norm2d(torch::nn::Module& parent, const std::string& name, int64_t channels,
               NormKind kind, int64_t gn_groups) {
  switch (kind) {
    case NormKind::kGroupNorm:
      gn_ = parent.register_module(
          name, Float32GroupNorm(torch::nn::GroupNormOptions(gn_groups, channels)));
      break;
    case NormKind::kFrozenBatchNorm:
      frozen_ = parent.register_module(name, FrozenBatchNorm2d(channels));
      break;
    case NormKind::kSyncBatchNorm:
      sync_ = parent.register_module(name, SyncBatchNorm(channels));
      break;
    case NormKind::kBatchNorm:
      bn_ = parent.register_module(name, torch::nn::BatchNorm2d(channels));
      break;
  }
}

at::Tensor Norm2d::operator()(const at::Tensor& x) {
  if (gn_) return gn_(x);
  if (sync_) return sync_(x);
  return bn_ ? bn_(x) : frozen_(x);
}

std::shared_ptr<torch::nn::Module> Norm2d::ptr() const {
  if (gn_) return gn_.ptr();
  if (sync_) return sync_.ptr();
  if (bn_) return bn_.ptr();
  return frozen_.ptr();
}

FusedConvNorm Norm2d::fuse_after(const torch::nn::Conv2dImpl& conv) const {
  TORCH_CHECK(!gn_, "ResNet: a GroupNorm cannot be folded into the conv before it");
  if (frozen_) return fold_frozen(conv, *frozen_);
  if (sync_) return fold_batch_norm(conv, *sync_);
  return fold_batch_norm(conv, *bn_);
}

namespace {

FusedConvNorm fuse_downsample(const torch::nn::Sequential& downsample) {
  const auto* c = downsample->ptr(0)->as<torch::nn::Conv2d>();
  TORCH_INTERNAL_ASSERT(c != nullptr, "ResNet: downsample.0 is not a Conv2d");
  if (const auto* f = downsample->ptr(1)->as<FrozenBatchNorm2d>()) return fold_frozen(*c, *f);
  if (const auto* sync = downsample->ptr(1)->as<SyncBatchNorm>()) {
    return fold_batch_norm(*c, *sync);
  }
  const auto* bn = downsample->ptr(1)->as<torch::nn::BatchNorm2d>();
  TORCH_INTERNAL_ASSERT(bn != nullptr, "ResNet: downsample.1 is not a norm");
  return fold_batch_norm(*c, *bn);
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in_channels, int64_t width, int64_t stride, NormKind norm,
                               int64_t gn_groups) {
  conv1_ = register_module("conv1", conv(in_channels, width, 3, stride));
  bn1_ = Norm2d(*this, "bn1", width, norm, gn_groups);
  conv2_ = register_module("conv2", conv(width, width, 3, 1));
  bn2_ = Norm2d(*this, "bn2", width, norm, gn_groups);
  if (stride != 1 || in_channels != width * kExpansion) {
    downsample_ = register_module("downsample",
                                  make_downsample(in_channels, width * kExpansion, stride, norm, gn_groups));
  }
}

at::Tensor BasicBlockImpl::forward(const at::Tensor& x) {
  if (fused_ && !is_training()) {
    if (f1_.stale() || f2_.stale() || (f_down_.defined() && f_down_.stale())) fuse();
    return f2_(f1_(x, /*relu=*/true), /*relu=*/true, f_down_.defined() ? f_down_(x) : x);
  }
  at::Tensor out = bn1_(conv1_(x)).relu_();
  out = bn2_(conv2_(out));
  out += downsample_ ? downsample_->forward(x) : x;
  return out.relu_();
}

void BasicBlockImpl::fuse() {
  f1_ = bn1_.fuse_after(*conv1_);
  f2_ = bn2_.fuse_after(*conv2_);
  f_down_ = downsample_ ? fuse_downsample(downsample_) : FusedConvNorm();
  fused_ = true;
}

void BasicBlockImpl::unfuse() {
  f1_ = f2_ = f_down_ = FusedConvNorm();
  fused_ = false;
}

BottleneckImpl::BottleneckImpl(int64_t in_channels, int64_t width, int64_t stride, NormKind norm,
                               int64_t gn_groups) {
  conv1_ = register_module("conv1", conv(in_channels, width, 1, 1));
  bn1_ = Norm2d(*this, "bn1", width, norm, gn_groups);
  conv2_ = register_module("conv2", conv(width, width, 3, stride));
  bn2_ = Norm2d(*this, "bn2", width, norm, gn_groups);
  conv3_ = register_module("conv3", conv(width, width * kExpansion, 1, 1));
  bn3_ = Norm2d(*this, "bn3", width * kExpansion, norm, gn_groups);
  if (stride != 1 || in_channels != width * kExpansion) {
    downsample_ = register_module("downsample",
                                  make_downsample(in_channels, width * kExpansion, stride, norm, gn_groups));
  }
}

at::Tensor BottleneckImpl::forward(const at::Tensor& x) {
  if (fused_ && !is_training()) {
    if (f1_.stale() || f2_.stale() || f3_.stale() || (f_down_.defined() && f_down_.stale())) {
      fuse();
    }
    const at::Tensor identity = f_down_.defined() ? f_down_(x) : x;
    return f3_(f2_(f1_(x, /*relu=*/true), /*relu=*/true), /*relu=*/true, identity);
  }
  at::Tensor out = bn1_(conv1_(x)).relu_();
  out = bn2_(conv2_(out)).relu_();
  out = bn3_(conv3_(out));
  out += downsample_ ? downsample_->forward(x) : x;
  return out.relu_();
}

void BottleneckImpl::fuse() {
  f1_ = bn1_.fuse_after(*conv1_);
  f2_ = bn2_.fuse_after(*conv2_);
  f3_ = bn3_.fuse_after(*conv3_);
  f_down_ = downsample_ ? fuse_downsample(downsample_) : FusedConvNorm();
  fused_ = true;
}

void BottleneckImpl::unfuse() {
  f1_ = f2_ = f3_ = f_down_ = FusedConvNorm();
  fused_ = false;
}

ResNetImpl::ResNetImpl(const ResNetOptions& options) : options_(options) {
  const DepthSpec spec = depth_spec(options_.depth());
  const int64_t base = options_.base_channels();
  TORCH_CHECK(base > 0, "ResNet: base_channels must be positive, got ", base);
  TORCH_CHECK(options_.in_channels() > 0, "ResNet: in_channels must be positive, got ",
              options_.in_channels());
  TORCH_CHECK(options_.frozen_stages() >= -1 && options_.frozen_stages() <= 4,
              "ResNet: frozen_stages must be in [-1, 4], got ", options_.frozen_stages());
  TORCH_CHECK(!options_.out_indices().empty(), "ResNet: out_indices must not be empty");
  for (size_t i = 0; i < options_.out_indices().size(); ++i) {
    const int64_t idx = options_.out_indices()[i];
    TORCH_CHECK(idx >= 0 && idx <= 3, "ResNet: out_indices[", i, "] must be in [0, 3], got ", idx);
    TORCH_CHECK(i == 0 || idx > options_.out_indices()[i - 1],
                "ResNet: out_indices must be strictly increasing");
  }
  const int64_t gn = options_.gn_groups();
  TORCH_CHECK(int{options_.frozen_bn()} + int{options_.sync_bn()} + int{gn != 0} <= 1,
              "ResNet: frozen_bn, sync_bn and gn_groups exclude each other");
  TORCH_CHECK(gn >= 0 && (gn == 0 || base % gn == 0), "ResNet: gn_groups (", gn,
              ") must divide base_channels (", base, ")");
  const NormKind norm = gn > 0                ? NormKind::kGroupNorm
                        : options_.frozen_bn() ? NormKind::kFrozenBatchNorm
                        : options_.sync_bn()   ? NormKind::kSyncBatchNorm
                                               : NormKind::kBatchNorm;

  conv1_ = register_module("conv1", conv(options_.in_channels(), base, 7, 2));
  bn1_ = Norm2d(*this, "bn1", base, norm, gn);
  int64_t in_channels = base;
  for (int64_t stage = 0; stage < 4; ++stage) {
    const int64_t width = base << stage;
    const int64_t stride = stage == 0 ? 1 : 2;
    torch::nn::Sequential layer;
    for (int64_t b = 0; b < spec.blocks[stage]; ++b) {
      if (spec.bottleneck) {
        layer->push_back(Bottleneck(in_channels, width, b == 0 ? stride : 1, norm, gn));
        in_channels = width * BottleneckImpl::kExpansion;
      } else {
        layer->push_back(BasicBlock(in_channels, width, b == 0 ? stride : 1, norm, gn));
        in_channels = width * BasicBlockImpl::kExpansion;
      }
    }
    layers_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
    stage_shapes_.push_back({in_channels, int64_t{4} << stage});
  }

  // torchvision.models.resnet init: kaiming_normal_(fan_out, relu) convs, BN weight 1, bias 0.
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
  freeze_stages();
}

void ResNetImpl::freeze_stages() {
  const int64_t k = options_.frozen_stages();
  if (k < 0) return;
  std::vector<std::shared_ptr<torch::nn::Module>> frozen{conv1_.ptr(), bn1_.ptr()};
  for (int64_t s = 0; s < k; ++s) frozen.push_back(layers_[s].ptr());
  for (auto& m : frozen) {
    for (auto& p : m->parameters()) p.set_requires_grad(false);
    m->eval();
  }
}

void ResNetImpl::train(bool on) {
  torch::nn::Module::train(on);
  if (on) {
    freeze_stages();
    unfuse();
  }
}

namespace {

template <typename F>
void for_each_block(std::vector<torch::nn::Sequential>& layers, F&& f) {
  for (auto& layer : layers) {
    for (auto& m : layer->children()) {
      if (auto* b = m->as<Bottleneck>()) {
        f(*b);
      } else if (auto* bb = m->as<BasicBlock>()) {
        f(*bb);
      }
    }
  }
}

}  // namespace

void ResNetImpl::fuse_for_inference() {
  TORCH_CHECK(!is_training(), "ResNet::fuse_for_inference: call eval() first");
  if (options_.gn_groups() > 0) return;  // GroupNorm normalises per image: nothing to fold
  stem_ = bn1_.fuse_after(*conv1_);
  for_each_block(layers_, [](auto& block) { block.fuse(); });
  fused_ = true;
}

void ResNetImpl::unfuse() {
  stem_ = FusedConvNorm();
  for_each_block(layers_, [](auto& block) { block.unfuse(); });
  fused_ = false;
}

std::vector<at::Tensor> ResNetImpl::forward(const at::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels(),
              "ResNet: expected images [B, ", options_.in_channels(), ", H, W], got ",
              images.sizes());
  at::Tensor x;
  if (fused_ && !is_training()) {
    if (stem_.stale()) stem_ = bn1_.fuse_after(*conv1_);
    x = stem_(images, /*relu=*/true);
  } else {
    x = bn1_(conv1_(images)).relu_();
  }
  x = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
  std::vector<at::Tensor> outs;
  const auto& wanted = options_.out_indices();
  for (int64_t stage = 0; stage <= wanted.back(); ++stage) {
    x = layers_[stage]->forward(x);
    if (std::find(wanted.begin(), wanted.end(), stage) != wanted.end()) outs.push_back(x);
  }
  return outs;
}

std::vector<ShapeSpec> ResNetImpl::output_shape() const {
  std::vector<ShapeSpec> out;
  for (int64_t idx : options_.out_indices()) out.push_back(stage_shapes_[idx]);
  return out;
}

ResNetOptions resnet_options_from_config(const Config& cfg) {
  cfg.check_keys({"type", "depth", "base_channels", "in_channels", "norm", "gn_groups",
                  "frozen_bn", "frozen_stages", "out_indices"});
  ResNetOptions opts(cfg.get<int64_t>("depth", 50));
  opts.base_channels(cfg.get<int64_t>("base_channels", 64))
      .in_channels(cfg.get<int64_t>("in_channels", 3))
      .frozen_bn(cfg.get<bool>("frozen_bn", false))
      .frozen_stages(cfg.get<int64_t>("frozen_stages", -1));
  if (cfg.has("norm")) {
    const auto norm = cfg.get<std::string>("norm");
    SETDET_CHECK(norm == "BN" || norm == "SyncBN" || norm == "FrozenBN" || norm == "GN",
                 cfg["norm"].where(), ": expected BN, SyncBN, FrozenBN or GN, got '", norm, "'");
    SETDET_CHECK(!cfg.has("frozen_bn") || opts.frozen_bn() == (norm == "FrozenBN"), cfg.where(),
                 ": norm '", norm,
                 "' contradicts frozen_bn: ", opts.frozen_bn() ? "true" : "false");
    opts.frozen_bn(norm == "FrozenBN").sync_bn(norm == "SyncBN");
    if (norm == "GN") opts.gn_groups(cfg.get<int64_t>("gn_groups", 32));
  }
  SETDET_CHECK(!cfg.has("gn_groups") || opts.gn_groups() > 0, cfg["gn_groups"].where(),
               ": gn_groups needs norm: GN");
  if (cfg.has("out_indices")) opts.out_indices(cfg.get<std::vector<int64_t>>("out_indices"));
  const int64_t depth = opts.depth();
  SETDET_CHECK(depth == 18 || depth == 34 || depth == 50 || depth == 101 || depth == 152,
               cfg["depth"].where(), ": expected one of 18, 34, 50, 101, 152, got ", depth);
  SETDET_CHECK(opts.base_channels() > 0, cfg.where(), ".base_channels: expected > 0, got ",
               opts.base_channels());
  SETDET_CHECK(opts.in_channels() > 0, cfg.where(), ".in_channels: expected > 0, got ",
               opts.in_channels());
  SETDET_CHECK(opts.gn_groups() == 0 || opts.base_channels() % opts.gn_groups() == 0,
               cfg.where(), ".gn_groups (", opts.gn_groups(),
               ") must divide base_channels (", opts.base_channels(), ")");
  SETDET_CHECK(opts.frozen_stages() >= -1 && opts.frozen_stages() <= 4, cfg.where(),
               ".frozen_stages: expected an integer in [-1, 4], got ", opts.frozen_stages());
  for (int64_t i : opts.out_indices()) {
    SETDET_CHECK(i >= 0 && i <= 3, cfg.where(), ".out_indices: expected values in [0, 3], got ", i);
  }
  return opts;
}

SETDET_REGISTER(BackboneRegistry, "ResNet", [](const Config& cfg) -> std::shared_ptr<Backbone> {
  return std::make_shared<ResNetImpl>(resnet_options_from_config(cfg));
});

}  // namespace setdet
