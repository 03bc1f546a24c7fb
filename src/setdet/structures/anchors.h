// Anchor boxes on a feature pyramid, as torchvision.models.detection.anchor_utils.AnchorGenerator
// (and, with the switches below, MMDetection 2.x's AnchorGenerator).
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "setdet/config/config.h"

namespace setdet {

struct AnchorGeneratorOptions {
  // Anchor sizes (sqrt of the area, input pixels) per level.
  TORCH_ARG(std::vector<std::vector<double>>, sizes);
  // Height / width ratios, shared by all levels.
  TORCH_ARG(std::vector<double>, aspect_ratios) = std::vector<double>{0.5, 1.0, 2.0};
  // torchvision rounds the base anchors (corners relative to the cell origin) to integers;
  // MMDetection 2.x keeps them fractional.
  TORCH_ARG(bool, round_base) = true;
  // true (torchvision): a level's stride is padded_size // grid_size per axis, so P6/P7 of an
  // input whose size is not a multiple of 128 get strides other than 64/128; false (MMDetection):
  // the nominal stride of the level.
  TORCH_ARG(bool, image_over_grid_stride) = true;
  // Anchor centres at ((j + offset) * stride_x, (i + offset) * stride_y); 0 in both references.
  TORCH_ARG(double, center_offset) = 0.0;
};

// sizes x * 2^(k / scales_per_octave), k = 0..scales_per_octave-1, for each base size x;
// truncate: int() of each size as torchvision's _default_anchorgen (32, 40, 50, 64, 80, 101, ...).
std::vector<std::vector<double>> octave_anchor_sizes(const std::vector<double>& base_sizes,
                                                     int64_t scales_per_octave, bool truncate);

class AnchorGenerator {
 public:
  explicit AnchorGenerator(AnchorGeneratorOptions options);

  int64_t num_levels() const { return static_cast<int64_t>(options_.sizes().size()); }
  // Anchors per location (equal on every level).
  int64_t num_anchors() const;
  // [A, 4] xyxy around the cell origin; order: ratio-major, then size (torchvision's order).
  const at::Tensor& base_anchors(int64_t level) const { return base_[static_cast<size_t>(level)]; }

  // Per level [H * W * A, 4] float32 xyxy, locations row-major (y, x), then anchors.
  // grid_hw: per level feature-map [H, W]; padded_hw: the batch tensor's [H, W];
  // nominal_strides: per level, used when image_over_grid_stride is off.
  std::vector<at::Tensor> grid_anchors(const std::vector<std::array<int64_t, 2>>& grid_hw,
                                       const std::array<int64_t, 2>& padded_hw,
                                       const std::vector<int64_t>& nominal_strides) const;

  const AnchorGeneratorOptions& options() const { return options_; }

 private:
  AnchorGeneratorOptions options_;
  std::vector<at::Tensor> base_;
};

// Per level [H * W, 2] float32 (x, y) = ((j + offset) * sx, (i + offset) * sy) with torchvision's
// AnchorGenerator strides sx = padded_w // W, sy = padded_h // H (the anchor centres of
// torchvision's FCOS, offset 0); locations row-major (y, x).
std::vector<at::Tensor> image_over_grid_points(const std::vector<std::array<int64_t, 2>>& grid_hw,
                                               const std::array<int64_t, 2>& padded_hw,
                                               double center_offset = 0.0);

// A head's per-level map [B, A * K, H, W] (channel a * K + k) -> [B, H * W * A, K], in the order of
// grid_anchors (y, x, anchor), as torchvision's permute_and_flatten.
at::Tensor flatten_anchor_level(const at::Tensor& map, int64_t k);
// Every level flattened and concatenated: [B, sum(H * W * A), K].
at::Tensor flatten_anchor_levels(const std::vector<at::Tensor>& maps, int64_t k);

// Config node (all keys optional; defaults = torchvision's RetinaNet):
//   {base_sizes: [32, 64, 128, 256, 512], scales_per_octave: 3, truncate_sizes: true,
//    aspect_ratios: [0.5, 1.0, 2.0], round_base: true, image_over_grid_stride: true,
//    center_offset: 0.0}
// or explicit `sizes: [[32, 40, 50], ...]` instead of base_sizes / scales_per_octave.
AnchorGeneratorOptions anchor_generator_options_from_config(const Config& cfg);

}  // namespace setdet
