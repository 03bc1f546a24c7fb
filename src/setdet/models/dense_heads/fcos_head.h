// FCOS head (Tian et al. 2019) as torchvision.models.detection.fcos.FCOSHead: two towers of
// num_convs x (conv3x3 + GroupNorm + ReLU) shared across levels; the classification tower ends in
// cls_logits, the regression tower in bbox_reg (l, t, r, b) and bbox_ctrness (centre-ness on the
// regression branch). Adds FCOS's learnable per-level Scale (mmdet's `scales`; absent from
// torchvision, which is equivalent to all scales = 1 with norm_on_bbox).
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "setdet/assign/fcos_assigner.h"
#include "setdet/config/config.h"
#include "setdet/layers/packed_conv2d.h"
#include "setdet/models/backbones/backbone.h"

namespace setdet {

// Outputs of a dense head: per output name, one tensor per pyramid level (finest first).
using DenseHeadOutputs = std::map<std::string, std::vector<at::Tensor>>;

// Casts every map that is not float32 (a 16-bit float under autocast) to float32, so that
// decoding, assignment and losses always run in float32.
inline std::vector<at::Tensor> to_float32(std::vector<at::Tensor> maps) {
  for (auto& m : maps) {
    if (m.scalar_type() != at::kFloat) m = m.to(at::kFloat);
  }
  return maps;
}
// Every map of `out`, output by output (in name order), level by level.
inline std::vector<at::Tensor> flatten_outputs(const DenseHeadOutputs& out) {
  std::vector<at::Tensor> maps;
  for (const auto& [name, levels] : out) maps.insert(maps.end(), levels.begin(), levels.end());
  return maps;
}

inline DenseHeadOutputs to_float32(DenseHeadOutputs out) {
  for (auto& [name, maps] : out) maps = to_float32(std::move(maps));
  return out;
}

class DenseHead : public torch::nn::Module {
 public:
  virtual DenseHeadOutputs forward(const std::vector<at::Tensor>& features) = 0;
  virtual std::vector<int64_t> strides() const = 0;
};

// Heads are sized by the neck they follow and by the number of classes:
//   DenseHeadRegistry().build(cfg)(neck->output_shape(), num_classes)
using DenseHeadFactory =
    std::function<std::shared_ptr<DenseHead>(const std::vector<ShapeSpec>&, int64_t)>;
SETDET_DEFINE_REGISTRY(DenseHeadRegistry, DenseHeadFactory, "head")

struct FCOSHeadOptions {
  FCOSHeadOptions(int64_t in_channels, int64_t num_classes, std::vector<int64_t> strides)
      : in_channels_(in_channels),
        num_classes_(num_classes),
        strides_(std::move(strides)),
        channels_(in_channels) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(std::vector<int64_t>, strides);  // one per input level
  TORCH_ARG(int64_t, channels);              // tower width (default: in_channels)
  TORCH_ARG(int64_t, num_convs) = 4;
  TORCH_ARG(int64_t, gn_groups) = 32;    // GroupNorm groups; must divide channels
  TORCH_ARG(double, prior_prob) = 0.01;  // cls_logits bias = -log((1 - p) / p)
  // true: distances = relu(scale * x) * stride (FCOS "norm_on_bbox", torchvision's
  // BoxLinearCoder(normalize_by_size=True)); false: exp(scale * x) (original FCOS).
  TORCH_ARG(bool, norm_on_bbox) = true;
  // Point of cell (i, j) is ((j + offset) * stride, (i + offset) * stride): 0.5 as the FCOS
  // authors' code and mmdet, 0 as torchvision.
  TORCH_ARG(double, center_offset) = 0.5;
};

// Outputs: "cls_logits" [B, C, H, W]; "bbox_distances" [B, 4, H, W] (l, t, r, b) >= 0 in input
// pixels; "centerness" [B, 1, H, W] logits; "reg_features" only with set_output_reg_features.
class FCOSHeadImpl : public DenseHead {
 public:
  explicit FCOSHeadImpl(const FCOSHeadOptions& options);
  DenseHeadOutputs forward(const std::vector<at::Tensor>& features) override;
  std::vector<int64_t> strides() const override { return options_.strides(); }

  // The points of every level for feature maps of the given [H, W] sizes.
  PointSet points(const std::vector<std::array<int64_t, 2>>& sizes,
                  const at::TensorOptions& options = at::kFloat) const;

  const FCOSHeadOptions& options() const { return options_; }

  // On: forward() also returns "reg_features", the regression tower's output per level
  // ([B, channels, H, W], the input of bbox_reg and bbox_ctrness), for heads attached behind it
  // (the PSS head). Off by default.
  void set_output_reg_features(bool on) { output_reg_features_ = on; }
  bool output_reg_features() const { return output_reg_features_; }

 private:
  FCOSHeadOptions options_;
  bool output_reg_features_ = false;
  torch::nn::Sequential cls_tower_{nullptr}, reg_tower_{nullptr};
  PackedConv2d cls_logits_{nullptr}, bbox_reg_{nullptr}, bbox_ctrness_{nullptr};
  at::Tensor scales_;  // [L]
};
TORCH_MODULE(FCOSHead);

}  // namespace setdet
