// DETR's training and test augmentations (facebookresearch/detr datasets/transforms.py, used
// unchanged by Deformable DETR and DETA), as pipeline steps:
//   {type: DetrResize, sizes: [480, 512, ..., 800], max_size: 1333}
//       one of `sizes` drawn per image is the short side unless the long side would exceed
//       max_size (then short = round(max_size * short / long)); the other side is
//       int(short * long / short_old) (get_size_with_aspect_ratio's truncation). Resized with
//       OpenCV's bilinear (DETR resizes PIL images, whose bilinear filter antialiases when
//       shrinking). Boxes scaled per axis.
//   {type: DetrRandomSizeCrop, min_size: 384, max_size: 600}
//       a crop of width U{min_size .. min(W, max_size)} and height U{min_size .. min(H,
//       max_size)} at a uniform position; boxes shifted, clipped to the crop, and dropped (with
//       their labels) when empty. An image smaller than min_size is an error (as in DETR).
//   {type: DetrRandomSelect, p: 0.5, transforms1: [...], transforms2: [...]}
//       the first list with probability p, else the second.
#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/data/transforms.h"

namespace setdet {
namespace {

class DetrResize : public Transform {
 public:
  DetrResize(std::vector<int64_t> sizes, int64_t max_size)
      : sizes_(std::move(sizes)), max_size_(max_size) {}

  // (h, w) of a w x h image for a short side `size` (DETR's get_size_with_aspect_ratio).
  static std::array<int64_t, 2> output_size(int64_t w, int64_t h, int64_t size, int64_t max_size) {
    if (max_size > 0) {
      const double lo = static_cast<double>(std::min(w, h));
      const double hi = static_cast<double>(std::max(w, h));
      if (hi / lo * static_cast<double>(size) > static_cast<double>(max_size)) {
        size = static_cast<int64_t>(std::nearbyint(static_cast<double>(max_size) * lo / hi));
      }
    }
    if ((w <= h && w == size) || (h <= w && h == size)) return {h, w};
    if (w < h) return {static_cast<int64_t>(static_cast<double>(size) * h / w), size};
    return {size, static_cast<int64_t>(static_cast<double>(size) * w / h)};
  }

  void apply(Sample& sample, Rng& rng) const override {
    const int64_t w = sample.image.cols, h = sample.image.rows;
    SETDET_CHECK(w > 0 && h > 0, "DetrResize: empty image ", sample.meta.file);
    const int64_t size =
        sizes_.size() == 1
            ? sizes_.front()
            : sizes_[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(sizes_.size()) - 1))];
    const auto [oh, ow] = output_size(w, h, size, max_size_);
    SETDET_CHECK(oh > 0 && ow > 0, "DetrResize: ", sample.meta.file, ": ", h, "x", w,
                 " resizes to an empty image");
    if (oh != h || ow != w) {
      cv::Mat resized;
      cv::resize(sample.image, resized, cv::Size(static_cast<int>(ow), static_cast<int>(oh)), 0, 0,
                 cv::INTER_LINEAR);
      sample.image = resized;
    }
    const double sx = static_cast<double>(ow) / static_cast<double>(w);
    const double sy = static_cast<double>(oh) / static_cast<double>(h);
    for (auto& b : sample.boxes) {
      b[0] = static_cast<float>(b[0] * sx);
      b[1] = static_cast<float>(b[1] * sy);
      b[2] = static_cast<float>(b[2] * sx);
      b[3] = static_cast<float>(b[3] * sy);
    }
    sample.meta.scale_x *= sx;
    sample.meta.scale_y *= sy;
    sample.meta.input_hw = {oh, ow};
    sample.meta.padded_hw = sample.meta.input_hw;
  }

 private:
  std::vector<int64_t> sizes_;
  int64_t max_size_;
};

class DetrRandomSizeCrop : public Transform {
 public:
  DetrRandomSizeCrop(int64_t min_size, int64_t max_size) : min_(min_size), max_(max_size) {}

  void apply(Sample& sample, Rng& rng) const override {
    const int64_t iw = sample.image.cols, ih = sample.image.rows;
    SETDET_CHECK(iw >= min_ && ih >= min_, "DetrRandomSizeCrop: ", sample.meta.file, ": ", ih, "x",
                 iw, " is smaller than min_size ", min_);
    const int64_t w = rng.randint(min_, std::min(iw, max_));
    const int64_t h = rng.randint(min_, std::min(ih, max_));
    const int64_t top = rng.randint(0, ih - h);
    const int64_t left = rng.randint(0, iw - w);
    sample.image = sample
                       .image(cv::Rect(static_cast<int>(left), static_cast<int>(top),
                                       static_cast<int>(w), static_cast<int>(h)))
                       .clone();
    std::vector<std::array<float, 4>> boxes;
    std::vector<int64_t> labels;
    const auto fw = static_cast<float>(w), fh = static_cast<float>(h);
    for (size_t i = 0; i < sample.boxes.size(); ++i) {
      const auto& b = sample.boxes[i];
      const std::array<float, 4> c{std::clamp(b[0] - static_cast<float>(left), 0.f, fw),
                                   std::clamp(b[1] - static_cast<float>(top), 0.f, fh),
                                   std::clamp(b[2] - static_cast<float>(left), 0.f, fw),
                                   std::clamp(b[3] - static_cast<float>(top), 0.f, fh)};
      if (c[2] > c[0] && c[3] > c[1]) {
        boxes.push_back(c);
        labels.push_back(sample.labels[i]);
      }
    }
    sample.boxes = std::move(boxes);
    sample.labels = std::move(labels);
    sample.meta.input_hw = {h, w};
    sample.meta.padded_hw = sample.meta.input_hw;
  }

 private:
  int64_t min_, max_;
};

class DetrRandomSelect : public Transform {
 public:
  DetrRandomSelect(double p, std::vector<std::shared_ptr<Transform>> first,
                   std::vector<std::shared_ptr<Transform>> second)
      : p_(p), first_(std::move(first)), second_(std::move(second)) {}

  void apply(Sample& sample, Rng& rng) const override {
    apply_pipeline(rng.uniform() < p_ ? first_ : second_, sample, rng);
  }

 private:
  double p_;
  std::vector<std::shared_ptr<Transform>> first_, second_;
};

std::shared_ptr<Transform> build_detr_resize(const Config& cfg) {
  cfg.check_keys({"type", "sizes", "max_size"});
  const Config s = cfg["sizes"];
  std::vector<int64_t> sizes;
  if (s.is_sequence()) {
    for (size_t i = 0; i < s.size(); ++i) sizes.push_back(s.at(i).as<int64_t>());
  } else {
    sizes.push_back(s.as<int64_t>());
  }
  SETDET_CHECK(!sizes.empty(), s.where(), ": expected at least one size");
  for (const int64_t v : sizes) {
    SETDET_CHECK(v > 0, s.where(), ": expected positive sizes, got ", v);
  }
  const auto max_size = cfg.get<int64_t>("max_size", 0);
  SETDET_CHECK(max_size >= 0, cfg["max_size"].where(), ": expected >= 0 (0: none), got ", max_size);
  return std::make_shared<DetrResize>(std::move(sizes), max_size);
}

std::shared_ptr<Transform> build_detr_random_size_crop(const Config& cfg) {
  cfg.check_keys({"type", "min_size", "max_size"});
  const auto lo = cfg.get<int64_t>("min_size");
  const auto hi = cfg.get<int64_t>("max_size");
  SETDET_CHECK(lo > 0 && hi >= lo, cfg.where(), ": expected 0 < min_size <= max_size, got ", lo,
               " and ", hi);
  return std::make_shared<DetrRandomSizeCrop>(lo, hi);
}

std::shared_ptr<Transform> build_detr_random_select(const Config& cfg) {
  cfg.check_keys({"type", "p", "transforms1", "transforms2"});
  const auto p = cfg.get<double>("p", 0.5);
  SETDET_CHECK(p >= 0 && p <= 1, cfg["p"].where(), ": expected a probability in [0, 1], got ", p);
  return std::make_shared<DetrRandomSelect>(p, build_pipeline(cfg["transforms1"]),
                                            build_pipeline(cfg["transforms2"]));
}

}  // namespace

SETDET_REGISTER(TransformRegistry, "DetrResize", build_detr_resize);
SETDET_REGISTER(TransformRegistry, "DetrRandomSizeCrop", build_detr_random_size_crop);
SETDET_REGISTER(TransformRegistry, "DetrRandomSelect", build_detr_random_select);

}  // namespace setdet
