// What the data pipeline hands to a detector (MMDetection's DetDataSample, batched): a padded image
// batch plus per-image targets and meta data. Boxes are xyxy in the pixels of the (resized,
// flipped) network input.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace setdet {

struct ImageMeta {
  int64_t image_id = 0;
  std::string file;
  std::array<int64_t, 2> original_hw{0, 0};  // decoded image size
  std::array<int64_t, 2> input_hw{0, 0};     // after resize, before padding
  std::array<int64_t, 2> padded_hw{0, 0};    // the batch tensor's H, W
  double scale_x = 1.0;                      // input = original * scale
  double scale_y = 1.0;
  bool flipped = false;  // horizontally flipped after resizing
};

struct Batch {
  at::Tensor images;               // [B, 3, H, W] float32, normalised, zero-padded
  std::vector<at::Tensor> boxes;   // per image [N_i, 4] float32 xyxy, input pixels
  std::vector<at::Tensor> labels;  // per image [N_i] int64, contiguous 0..C-1
  std::vector<ImageMeta> metas;

  int64_t size() const { return static_cast<int64_t>(metas.size()); }
};

}  // namespace setdet
