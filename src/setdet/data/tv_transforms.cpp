// torchvision's detection pre-processing (GeneralizedRCNNTransform.normalize + resize) as one
// pipeline step, registered as "TorchvisionResize":
//   {type: TorchvisionResize, min_size: 800 (or a list: one drawn per image), max_size: 1333,
//    mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
// The decoded 8-bit BGR image becomes RGB float32 in [0, 1], is normalised ((x - mean) / std, per
// channel), then resized with ATen's upsample_bilinear2d (align_corners false) to
// floor(side * scale), scale = min(min_size / short side, max_size / long side) in float32, exactly
// as F.interpolate(scale_factor=scale, recompute_scale_factor=True) in torchvision 0.14. Boxes are
// scaled by float32(new / old) per axis (torchvision's resize_boxes). Pad afterwards (the batch
// is zero-padded to a multiple of 32 as torchvision's batch_images); no Normalize step follows.
#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/data/image_io.h"
#include "setdet/data/transforms.h"

namespace setdet {
namespace {

class TorchvisionResize : public Transform {
 public:
  TorchvisionResize(std::vector<int64_t> min_sizes, int64_t max_size, std::array<float, 3> mean,
                    std::array<float, 3> std)
      : min_sizes_(std::move(min_sizes)), max_size_(max_size), mean_(mean), std_(std) {}

  void apply(Sample& sample, Rng& rng) const override {
    const cv::Mat& src = sample.image;
    SETDET_CHECK(src.type() == CV_8UC3, "TorchvisionResize: ", sample.meta.file,
                 ": expected the decoded 8-bit BGR image (put TorchvisionResize first and no "
                 "Normalize before it), got OpenCV type ",
                 src.type());
    const int64_t h = src.rows, w = src.cols;
    SETDET_CHECK(h > 0 && w > 0, "TorchvisionResize: empty image ", sample.meta.file);
    const int64_t min_size = min_sizes_.size() == 1
                                 ? min_sizes_.front()
                                 : min_sizes_[static_cast<size_t>(rng.randint(
                                       0, static_cast<int64_t>(min_sizes_.size()) - 1))];

    cv::Mat contiguous = src.isContinuous() ? src : src.clone();
    const at::Tensor bgr =
        at::from_blob(contiguous.data, {h, w, 3}, at::kByte).permute({2, 0, 1}).flip({0});
    const at::Tensor mean = at::tensor(std::vector<float>(mean_.begin(), mean_.end()));
    const at::Tensor std = at::tensor(std::vector<float>(std_.begin(), std_.end()));
    const at::Tensor x = (bgr.to(at::kFloat) / 255.0f - mean.view({3, 1, 1})) / std.view({3, 1, 1});

    const float short_side = static_cast<float>(std::min(h, w));
    const float long_side = static_cast<float>(std::max(h, w));
    // float32 as torchvision's `self_min_size / min_size`, which PyTorch evaluates as
    // reciprocal(min_size) * self_min_size (576 px: 1.38888896, so 800 rows, not 799).
    const float scale = std::min((1.0f / short_side) * static_cast<float>(min_size),
                                 (1.0f / long_side) * static_cast<float>(max_size_));
    const auto out_h = static_cast<int64_t>(std::floor(static_cast<double>(h) * scale));
    const auto out_w = static_cast<int64_t>(std::floor(static_cast<double>(w) * scale));
    SETDET_CHECK(out_h > 0 && out_w > 0, "TorchvisionResize: ", sample.meta.file, ": ", h, "x", w,
                 " resizes to an empty image");
    const at::Tensor resized =
        at::upsample_bilinear2d(x.unsqueeze(0), {out_h, out_w}, /*align_corners=*/false)
            .squeeze(0)
            .permute({1, 2, 0})
            .contiguous();
    cv::Mat dst(static_cast<int>(out_h), static_cast<int>(out_w), CV_32FC3);
    std::memcpy(dst.data, resized.data_ptr<float>(),
                sizeof(float) * static_cast<size_t>(out_h * out_w * 3));
    sample.image = dst;

    const float rx = static_cast<float>(out_w) / static_cast<float>(w);
    const float ry = static_cast<float>(out_h) / static_cast<float>(h);
    for (auto& b : sample.boxes) {
      b[0] *= rx;
      b[1] *= ry;
      b[2] *= rx;
      b[3] *= ry;
    }
    sample.meta.scale_x *= static_cast<double>(out_w) / static_cast<double>(w);
    sample.meta.scale_y *= static_cast<double>(out_h) / static_cast<double>(h);
    sample.meta.input_hw = {out_h, out_w};
    sample.meta.padded_hw = sample.meta.input_hw;
  }

 private:
  std::vector<int64_t> min_sizes_;
  int64_t max_size_;
  std::array<float, 3> mean_, std_;
};

std::array<float, 3> read_triple(const Config& node) {
  SETDET_CHECK(node.is_sequence() && node.size() == 3, node.where(), ": expected 3 numbers, got '",
               node.dump(), "'");
  return {node.at(0).as<float>(), node.at(1).as<float>(), node.at(2).as<float>()};
}

std::shared_ptr<Transform> build_torchvision_resize(const Config& cfg) {
  cfg.check_keys({"type", "min_size", "max_size", "mean", "std"});
  std::vector<int64_t> min_sizes;
  if (!cfg.has("min_size")) {
    min_sizes.push_back(800);
  } else if (cfg["min_size"].is_sequence()) {
    const Config list = cfg["min_size"];
    for (size_t i = 0; i < list.size(); ++i) min_sizes.push_back(list.at(i).as<int64_t>());
  } else {
    min_sizes.push_back(cfg.get<int64_t>("min_size"));
  }
  SETDET_CHECK(!min_sizes.empty(), cfg["min_size"].where(), ": expected at least one size");
  for (const int64_t s : min_sizes) {
    SETDET_CHECK(s > 0 && s <= kMaxImageSide, cfg.where(), ".min_size: expected sizes in [1, ",
                 kMaxImageSide, "] px, got ", s);
  }
  const auto max_size = cfg.get<int64_t>("max_size", 1333);
  SETDET_CHECK(max_size > 0 && max_size <= kMaxImageSide, cfg.where(),
               ".max_size: expected a size in [1, ", kMaxImageSide, "] px, got ", max_size);
  const std::array<float, 3> mean =
      cfg.has("mean") ? read_triple(cfg["mean"]) : std::array<float, 3>{0.485f, 0.456f, 0.406f};
  const std::array<float, 3> std =
      cfg.has("std") ? read_triple(cfg["std"]) : std::array<float, 3>{0.229f, 0.224f, 0.225f};
  for (const float s : std) {
    SETDET_CHECK(s > 0.f, cfg.where(), ".std: expected positive values, got ", s);
  }
  return std::make_shared<TorchvisionResize>(std::move(min_sizes), max_size, mean, std);
}

SETDET_REGISTER(TransformRegistry, "TorchvisionResize", build_torchvision_resize);

}  // namespace
}  // namespace setdet
