// RoI feature extractors (two-stage detectors): one fixed-size feature per RoI pooled from a
// feature pyramid. MultiScaleRoIAlign assigns each RoI to one pyramid level by its size (FPN,
// Lin et al. 2017, Eq. 1) and pools it there with RoIAlign, as torchvision.ops.MultiScaleRoIAlign
// (0.14) and MMDetection's SingleRoIExtractor.
#pragma once

#include <ATen/ATen.h>
#include <torch/arg.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "setdet/config/registry.h"

namespace setdet {

class RoIExtractor {
 public:
  virtual ~RoIExtractor() = default;

  // feats: pyramid maps, finest first, [B, C, H_l, W_l] each; rois [K, 5] = (image index, x1, y1,
  // x2, y2) in input pixels, the features' dtype; image_hw: the input size the maps come from
  // (torchvision: the largest height and width over the batch's images before padding).
  // -> [K, C, output_size[0], output_size[1]], differentiable w.r.t. feats.
  virtual at::Tensor forward(const std::vector<at::Tensor>& feats, const at::Tensor& rois,
                             const std::array<int64_t, 2>& image_hw) const = 0;
  virtual std::array<int64_t, 2> output_size() const = 0;

  // Per-image boxes [N_i, 4] xyxy instead of rois (torchvision's calling convention).
  at::Tensor forward(const std::vector<at::Tensor>& feats, const std::vector<at::Tensor>& boxes,
                     const std::array<int64_t, 2>& image_hw) const;
};

// Builders return a ready extractor.
SETDET_DEFINE_REGISTRY(RoIExtractorRegistry, std::shared_ptr<RoIExtractor>, "RoI extractor")

using OutputSize = std::array<int64_t, 2>;  // [height, width]

struct MultiScaleRoIAlignOptions {
  TORCH_ARG(OutputSize, output_size) = {{7, 7}};
  TORCH_ARG(int64_t, sampling_ratio) = 2;  // <= 0: adaptive (ceil(RoI size / output size))
  TORCH_ARG(bool, aligned) = false;        // pixel-centre coordinates (MMDetection: true)
  // The finest maps used; 0: as many as featmap_strides, or every map given.
  TORCH_ARG(int64_t, num_levels) = 0;
  // Input pixels per cell of each used map (MMDetection). Empty: inferred per call from the map
  // heights as torchvision: scale_l = 2^round(log2(H_l / image_h)).
  TORCH_ARG(std::vector<double>, featmap_strides) = {};
  // "torchvision": level = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6),
  //   clamped to [log2(stride_0), log2(stride_last)] (torchvision's LevelMapper, k0 = 4, 224);
  // "mmdet": level = floor(log2(sqrt(area) / finest_scale + 1e-6)), clamped to [0, L - 1]
  //   (MMDetection's SingleRoIExtractor.map_roi_levels). area = (x2 - x1) * (y2 - y1).
  TORCH_ARG(std::string, level_mapping) = "torchvision";
  TORCH_ARG(double, canonical_scale) = 224.0;
  TORCH_ARG(int64_t, canonical_level) = 4;
  TORCH_ARG(double, finest_scale) = 56.0;
  // Expected channels of the maps (MMDetection's out_channels); 0: not checked.
  TORCH_ARG(int64_t, out_channels) = 0;
};

// Registered as "MultiScaleRoIAlign" (torchvision's defaults; keys: type, output_size (n or
// [h, w]), sampling_ratio, aligned, num_levels, featmap_strides, level_mapping, canonical_scale,
// canonical_level, finest_scale) and "SingleRoIExtractor" (MMDetection's config: type,
// roi_layer {type: RoIAlign, output_size, sampling_ratio (0), aligned (true)}, out_channels,
// featmap_strides (required), finest_scale; level_mapping "mmdet").
// With one level, every RoI is pooled from it (no mapping), as both references.
class MultiScaleRoIAlign : public RoIExtractor {
 public:
  explicit MultiScaleRoIAlign(MultiScaleRoIAlignOptions options = {});

  using RoIExtractor::forward;
  at::Tensor forward(const std::vector<at::Tensor>& feats, const at::Tensor& rois,
                     const std::array<int64_t, 2>& image_hw) const override;
  std::array<int64_t, 2> output_size() const override { return options_.output_size(); }

  // Spatial scale (1 / stride) of each of the `num_levels` maps used.
  std::vector<double> scales(const std::vector<at::Tensor>& feats,
                             const std::array<int64_t, 2>& image_hw) const;
  // rois [K, 5] -> int64 [K]: index into the used maps (0: the finest), given their scales.
  at::Tensor map_levels(const at::Tensor& rois, const std::vector<double>& scales) const;

  const MultiScaleRoIAlignOptions& options() const { return options_; }

 private:
  int64_t used_levels(size_t num_maps) const;

  MultiScaleRoIAlignOptions options_;
};

}  // namespace setdet
