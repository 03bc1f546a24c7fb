// ResNet-18/34/50/101/152 (He et al. 2016) as torchvision.models.resnet (v1.5: the stride of a
// Bottleneck is on its 3x3 conv), without the classifier. Parameter names match torchvision's
// (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, ...), so a torchvision state_dict loads
// by name. base_channels scales every width (64: standard; 32: half width).
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include <vector>

#include "setdet/config/config.h"
#include "setdet/layers/float32_group_norm.h"
#include "setdet/layers/frozen_batch_norm.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/layers/sync_batch_norm.h"
#include "setdet/models/backbones/backbone.h"

namespace setdet {

struct ResNetOptions {
  explicit ResNetOptions(int64_t depth = 50) : depth_(depth) {}
  TORCH_ARG(int64_t, depth);               // 18, 34, 50, 101 or 152
  TORCH_ARG(int64_t, base_channels) = 64;  // width of the stem and of layer1's 3x3 convs
  TORCH_ARG(int64_t, in_channels) = 3;     // input planes (e.g. RGB + masks)
  TORCH_ARG(bool, frozen_bn) = false;      // FrozenBatchNorm2d instead of BatchNorm2d everywhere
  // SyncBatchNorm instead of BatchNorm2d: statistics over every data-parallel process's images.
  TORCH_ARG(bool, sync_bn) = false;
  // > 0: GroupNorm with this many groups instead of BatchNorm2d everywhere (Wu & He 2018; no batch
  // statistics, so it trains from scratch on small batches; not folded for inference).
  TORCH_ARG(int64_t, gn_groups) = 0;
  // -1: train everything; 0: freeze the stem; k >= 1: the stem and layer1..layerk (no gradient,
  // their BatchNorms stay in eval mode).
  TORCH_ARG(int64_t, frozen_stages) = -1;
  TORCH_ARG(std::vector<int64_t>, out_indices) = std::vector<int64_t>{1, 2, 3};  // 0 = layer1 (C2)
};

enum class NormKind { kBatchNorm, kSyncBatchNorm, kFrozenBatchNorm, kGroupNorm };

// A BatchNorm2d, SyncBatchNorm, FrozenBatchNorm2d or GroupNorm, registered under the caller's
// name.
class Norm2d {
 public:
  Norm2d() = default;
  Norm2d(torch::nn::Module& parent, const std::string& name, int64_t channels, NormKind kind,
         int64_t gn_groups = 0);
  at::Tensor operator()(const at::Tensor& x);
  std::shared_ptr<torch::nn::Module> ptr() const;
  // conv followed by this norm (eval-mode statistics) as one conv; not for GroupNorm.
  FusedConvNorm fuse_after(const torch::nn::Conv2dImpl& conv) const;

 private:
  torch::nn::BatchNorm2d bn_{nullptr};
  SyncBatchNorm sync_{nullptr};
  FrozenBatchNorm2d frozen_{nullptr};
  Float32GroupNorm gn_{nullptr};
};

class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t in_channels, int64_t width, int64_t stride, NormKind norm,
                 int64_t gn_groups = 0);
  at::Tensor forward(const at::Tensor& x);
  // Folds every norm into its conv; forward uses the folded convs in eval mode.
  void fuse();
  void unfuse();
  bool fused() const { return fused_; }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  Norm2d bn1_, bn2_;
  torch::nn::Sequential downsample_{nullptr};
  bool fused_ = false;
  FusedConvNorm f1_, f2_, f_down_;
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t in_channels, int64_t width, int64_t stride, NormKind norm,
                 int64_t gn_groups = 0);
  at::Tensor forward(const at::Tensor& x);
  // Folds every norm into its conv; forward uses the folded convs in eval mode.
  void fuse();
  void unfuse();
  bool fused() const { return fused_; }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  Norm2d bn1_, bn2_, bn3_;
  torch::nn::Sequential downsample_{nullptr};
  bool fused_ = false;
  FusedConvNorm f1_, f2_, f3_, f_down_;
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public Backbone, public InferenceFusable {
 public:
  explicit ResNetImpl(const ResNetOptions& options);

  // images [B, 3, H, W] -> the maps of options.out_indices (C(i+2), stride 2^(i+2)).
  std::vector<at::Tensor> forward(const at::Tensor& images) override;
  std::vector<ShapeSpec> output_shape() const override;
  // Keeps the BatchNorms of frozen stages in eval mode; training mode also drops the folding.
  void train(bool on = true) override;
  // Inference: every BatchNorm / FrozenBatchNorm folded into the conv before it (eval mode only;
  // parameter and buffer names unchanged; GroupNorm cannot be folded and stays as it is). Folded tensors are rebuilt when the weights change in
  // place (e.g. load_state_dict after fusing).
  void fuse_for_inference() override;
  void unfuse() override;

  const ResNetOptions& options() const { return options_; }

 private:
  void freeze_stages();

  ResNetOptions options_;
  torch::nn::Conv2d conv1_{nullptr};
  Norm2d bn1_;
  std::vector<torch::nn::Sequential> layers_;
  std::vector<ShapeSpec> stage_shapes_;  // layer1..layer4
  bool fused_ = false;
  FusedConvNorm stem_;
};
TORCH_MODULE(ResNet);

// Config keys: type, depth, base_channels, in_channels, norm (BN | SyncBN | FrozenBN; frozen_bn:
// true is FrozenBN), frozen_bn, frozen_stages, out_indices.
ResNetOptions resnet_options_from_config(const Config& cfg);

}  // namespace setdet
