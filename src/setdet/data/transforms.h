// Per-image transforms in the MMDetection 2.x mould (Resize, RandomFlip, Normalize, Pad), built
// from config nodes `{type: Resize, ...}` through TransformRegistry(). All randomness comes from
// the Rng handed to apply(), which the loader seeds per (seed, epoch, image), so augmentation
// does not depend on which worker thread runs it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "setdet/config/registry.h"
#include "setdet/data/random.h"
#include "setdet/structures/batch.h"

namespace setdet {

// One image on its way through the pipeline.
struct Sample {
  cv::Mat image;  // H x W x 3: CV_8UC3 BGR as decoded, CV_32FC3 after Normalize
  std::vector<std::array<float, 4>> boxes;  // xyxy, pixels of `image`
  std::vector<int64_t> labels;              // contiguous 0..C-1
  ImageMeta meta;                           // original_hw / input_hw / scale / flipped kept current
};

class Transform {
 public:
  virtual ~Transform() = default;
  virtual void apply(Sample& sample, Rng& rng) const = 0;
};

// Builders receive the transform's config node and return a ready transform.
SETDET_DEFINE_REGISTRY(TransformRegistry, std::shared_ptr<Transform>, "transform")

// Builds a list of transform nodes (`pipeline: [{type: Resize, ...}, ...]`).
std::vector<std::shared_ptr<Transform>> build_pipeline(const Config& list);
void apply_pipeline(const std::vector<std::shared_ptr<Transform>>& pipeline, Sample& sample,
                    Rng& rng);

// The image file `path` decoded (read_image) as a Sample without annotations whose original,
// input and padded sizes are the image's own: what inference starts from.
Sample image_sample(const std::string& path);
// A sample of a decoded 8-bit BGR image (no file), ready for a pipeline.
Sample image_sample(cv::Mat image);

// Resize (config `type: Resize`), as MMDetection 2.x's Resize with mmcv.imrescale:
//   scale: [a, b] or a list of them; keep_ratio: true; multiscale_mode: value | range
// keep_ratio: factor = min(max(a, b) / long side, min(a, b) / short side), new size
// = round(w * factor), round(h * factor); otherwise the image becomes exactly a (width) x b
// (height). Boxes are scaled by new_w / w and new_h / h and clipped to the new image.
// Several scales: "value" picks one uniformly; "range" (exactly two scales) draws the long edge
// uniformly from the integers between the scales' long edges and the short edge likewise.
class Resize : public Transform {
 public:
  enum class Mode { kValue, kRange };
  Resize(std::vector<std::array<int64_t, 2>> scales, bool keep_ratio = true,
         Mode mode = Mode::kValue);
  // The target scale for one image.
  std::array<int64_t, 2> sample_scale(Rng& rng) const;
  // New (width, height) of a w x h image for a target scale.
  std::array<int64_t, 2> output_size(int64_t w, int64_t h,
                                     const std::array<int64_t, 2>& scale) const;
  void apply(Sample& sample, Rng& rng) const override;

 private:
  std::vector<std::array<int64_t, 2>> scales_;
  bool keep_ratio_;
  Mode mode_;
};

// RandomFlip (`type: RandomFlip, prob: 0.5`): horizontal mirror; x1' = W - x2, x2' = W - x1 with
// W the current image width (so it belongs before Pad).
class RandomFlip : public Transform {
 public:
  explicit RandomFlip(double prob = 0.5);
  void apply(Sample& sample, Rng& rng) const override;

 private:
  double prob_;
};

// Normalize (`type: Normalize, mean: [3], std: [3], to_rgb: true`): converts to float32,
// BGR -> RGB if to_rgb, then (x - mean) / std per channel (mean/std in the output order).
class Normalize : public Transform {
 public:
  Normalize(std::array<float, 3> mean, std::array<float, 3> std, bool to_rgb = true);
  void apply(Sample& sample, Rng& rng) const override;

 private:
  std::array<float, 3> mean_;
  std::array<float, 3> inv_std_;
  bool to_rgb_;
};

// Pad (`type: Pad, size_divisor: 32` or `size: [h, w]`, pad_val: 0): pads bottom and right.
class Pad : public Transform {
 public:
  Pad(int64_t size_divisor, std::array<int64_t, 2> size_hw = {0, 0}, double pad_val = 0.0);
  void apply(Sample& sample, Rng& rng) const override;

 private:
  int64_t size_divisor_;
  std::array<int64_t, 2> size_hw_;
  double pad_val_;
};

}  // namespace setdet
