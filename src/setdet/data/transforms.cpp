#include "setdet/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <utility>

#include "setdet/core/error.h"
#include "setdet/data/image_io.h"

namespace setdet {

std::vector<std::shared_ptr<Transform>> build_pipeline(const Config& list) {
  SETDET_CHECK(list.is_sequence(), list.where(), ": expected a list of transforms, got '",
               list.dump(), "'");
  std::vector<std::shared_ptr<Transform>> out;
  for (size_t i = 0; i < list.size(); ++i) out.push_back(TransformRegistry().build(list.at(i)));
  return out;
}

Sample image_sample(const std::string& path) {
  Sample sample = image_sample(read_image(path));
  sample.meta.file = path;
  return sample;
}

Sample image_sample(cv::Mat image) {
  Sample sample;
  sample.image = std::move(image);
  sample.meta.original_hw = {sample.image.rows, sample.image.cols};
  sample.meta.input_hw = sample.meta.original_hw;
  sample.meta.padded_hw = sample.meta.original_hw;
  return sample;
}

void apply_pipeline(const std::vector<std::shared_ptr<Transform>>& pipeline, Sample& sample,
                    Rng& rng) {
  for (const auto& t : pipeline) t->apply(sample, rng);
}

// ---- Resize ----

Resize::Resize(std::vector<std::array<int64_t, 2>> scales, bool keep_ratio, Mode mode)
    : scales_(std::move(scales)), keep_ratio_(keep_ratio), mode_(mode) {
  SETDET_CHECK(!scales_.empty(), "Resize: needs at least one scale");
  for (const auto& s : scales_) {
    SETDET_CHECK(s[0] > 0 && s[1] > 0, "Resize: scales must be positive, got [", s[0], ", ", s[1],
                 "]");
  }
  SETDET_CHECK(mode_ != Mode::kRange || scales_.size() == 2,
               "Resize: multiscale_mode 'range' needs exactly 2 scales, got ", scales_.size());
}

std::array<int64_t, 2> Resize::sample_scale(Rng& rng) const {
  if (scales_.size() == 1) return scales_[0];
  if (mode_ == Mode::kValue) {
    return scales_[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(scales_.size()) - 1))];
  }
  const auto& a = scales_[0];
  const auto& b = scales_[1];
  const int64_t long_a = std::max(a[0], a[1]), long_b = std::max(b[0], b[1]);
  const int64_t short_a = std::min(a[0], a[1]), short_b = std::min(b[0], b[1]);
  const int64_t long_edge = rng.randint(std::min(long_a, long_b), std::max(long_a, long_b));
  const int64_t short_edge = rng.randint(std::min(short_a, short_b), std::max(short_a, short_b));
  return {long_edge, short_edge};
}

std::array<int64_t, 2> Resize::output_size(int64_t w, int64_t h,
                                           const std::array<int64_t, 2>& scale) const {
  if (!keep_ratio_) return scale;
  const double max_long = static_cast<double>(std::max(scale[0], scale[1]));
  const double max_short = static_cast<double>(std::min(scale[0], scale[1]));
  const double factor = std::min(max_long / static_cast<double>(std::max(w, h)),
                                 max_short / static_cast<double>(std::min(w, h)));
  // as mmcv's _scale_size: int(w * factor + 0.5)
  return {std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(w) * factor + 0.5)),
          std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(h) * factor + 0.5))};
}

void Resize::apply(Sample& sample, Rng& rng) const {
  const int64_t w = sample.image.cols, h = sample.image.rows;
  SETDET_CHECK(w > 0 && h > 0, "Resize: empty image ", sample.meta.file);
  const auto size = output_size(w, h, sample_scale(rng));
  if (size[0] != w || size[1] != h) {
    cv::Mat resized;
    cv::resize(sample.image, resized,
               cv::Size(static_cast<int>(size[0]), static_cast<int>(size[1])), 0, 0,
               cv::INTER_LINEAR);
    sample.image = resized;
  }
  const double sx = static_cast<double>(size[0]) / static_cast<double>(w);
  const double sy = static_cast<double>(size[1]) / static_cast<double>(h);
  const auto fx = static_cast<float>(sx), fy = static_cast<float>(sy);
  const auto max_x = static_cast<float>(size[0]), max_y = static_cast<float>(size[1]);
  for (auto& b : sample.boxes) {
    b[0] = std::clamp(b[0] * fx, 0.f, max_x);
    b[1] = std::clamp(b[1] * fy, 0.f, max_y);
    b[2] = std::clamp(b[2] * fx, 0.f, max_x);
    b[3] = std::clamp(b[3] * fy, 0.f, max_y);
  }
  sample.meta.scale_x *= sx;
  sample.meta.scale_y *= sy;
  sample.meta.input_hw = {size[1], size[0]};
  sample.meta.padded_hw = sample.meta.input_hw;
}

// ---- RandomFlip ----

RandomFlip::RandomFlip(double prob) : prob_(prob) {
  SETDET_CHECK(prob >= 0.0 && prob <= 1.0, "RandomFlip: prob must be in [0, 1], got ", prob);
}

void RandomFlip::apply(Sample& sample, Rng& rng) const {
  if (!(rng.uniform() < prob_)) return;
  cv::Mat flipped;
  cv::flip(sample.image, flipped, 1);
  sample.image = flipped;
  const auto w = static_cast<float>(sample.image.cols);
  for (auto& b : sample.boxes) {
    const float x1 = b[0];
    b[0] = w - b[2];
    b[2] = w - x1;
  }
  sample.meta.flipped = !sample.meta.flipped;
}

// ---- Normalize ----

Normalize::Normalize(std::array<float, 3> mean, std::array<float, 3> std, bool to_rgb)
    : mean_(mean), to_rgb_(to_rgb) {
  for (int c = 0; c < 3; ++c) {
    SETDET_CHECK(std[c] > 0.f, "Normalize: std must be positive, got ", std[c]);
    inv_std_[c] = 1.f / std[c];
  }
}

namespace {
// One pass: optional channel swap, (x - mean) * inv_std, into a float image.
template <typename In>
void normalize_into(const cv::Mat& src, cv::Mat& dst, const std::array<float, 3>& mean,
                    const std::array<float, 3>& inv_std, bool swap) {
  const int c0 = swap ? 2 : 0, c2 = swap ? 0 : 2;
  for (int y = 0; y < src.rows; ++y) {
    const In* in = src.ptr<In>(y);
    float* out = dst.ptr<float>(y);
    for (int x = 0; x < src.cols; ++x, in += 3, out += 3) {
      out[0] = (static_cast<float>(in[c0]) - mean[0]) * inv_std[0];
      out[1] = (static_cast<float>(in[1]) - mean[1]) * inv_std[1];
      out[2] = (static_cast<float>(in[c2]) - mean[2]) * inv_std[2];
    }
  }
}
}  // namespace

void Normalize::apply(Sample& sample, Rng& /*rng*/) const {
  const cv::Mat& src = sample.image;
  SETDET_CHECK(src.type() == CV_8UC3 || src.type() == CV_32FC3, "Normalize: ", sample.meta.file,
               ": expected a 3-channel 8-bit or float image, got OpenCV type ", src.type());
  cv::Mat dst(src.rows, src.cols, CV_32FC3);
  if (src.depth() == CV_8U) {
    normalize_into<uchar>(src, dst, mean_, inv_std_, to_rgb_);
  } else {
    normalize_into<float>(src, dst, mean_, inv_std_, to_rgb_);
  }
  sample.image = dst;
}

// ---- Pad ----

Pad::Pad(int64_t size_divisor, std::array<int64_t, 2> size_hw, double pad_val)
    : size_divisor_(size_divisor), size_hw_(size_hw), pad_val_(pad_val) {
  SETDET_CHECK((size_divisor > 0) != (size_hw[0] > 0 && size_hw[1] > 0),
               "Pad: give exactly one of size_divisor (> 0) or size [h, w] (> 0)");
}

void Pad::apply(Sample& sample, Rng& /*rng*/) const {
  const int64_t h = sample.image.rows, w = sample.image.cols;
  int64_t ph = size_hw_[0], pw = size_hw_[1];
  if (size_divisor_ > 0) {
    ph = (h + size_divisor_ - 1) / size_divisor_ * size_divisor_;
    pw = (w + size_divisor_ - 1) / size_divisor_ * size_divisor_;
  }
  SETDET_CHECK(ph >= h && pw >= w, "Pad: ", sample.meta.file, ": image ", h, "x", w,
               " is larger than the pad size ", ph, "x", pw);
  if (ph != h || pw != w) {
    cv::Mat padded;
    cv::copyMakeBorder(sample.image, padded, 0, static_cast<int>(ph - h), 0,
                       static_cast<int>(pw - w), cv::BORDER_CONSTANT, cv::Scalar::all(pad_val_));
    sample.image = padded;
  }
  sample.meta.padded_hw = {ph, pw};
}

// ---- registration ----

namespace {

std::array<int64_t, 2> read_pair(const Config& node) {
  SETDET_CHECK(node.is_sequence() && node.size() == 2, node.where(),
               ": expected a pair [a, b], got '", node.dump(), "'");
  const auto a = node.at(0).as<int64_t>(), b = node.at(1).as<int64_t>();
  SETDET_CHECK(a > 0 && b > 0, node.where(), ": expected positive sizes, got '", node.dump(), "'");
  SETDET_CHECK(a <= kMaxImageSide && b <= kMaxImageSide && a * b <= kMaxImagePixels, node.where(),
               ": expected sizes of at most ", kMaxImageSide, " px and ", kMaxImagePixels,
               " pixels (setdet's image limits), got '", node.dump(), "'");
  return {a, b};
}

std::array<float, 3> read_triple(const Config& node) {
  SETDET_CHECK(node.is_sequence() && node.size() == 3, node.where(), ": expected 3 numbers, got '",
               node.dump(), "'");
  return {node.at(0).as<float>(), node.at(1).as<float>(), node.at(2).as<float>()};
}

std::shared_ptr<Transform> build_resize(const Config& cfg) {
  cfg.check_keys({"scale", "keep_ratio", "multiscale_mode"});
  const Config scale = cfg["scale"];
  SETDET_CHECK(scale.is_sequence() && scale.size() > 0, scale.where(),
               ": expected [w, h] or a list of them, got '", scale.dump(), "'");
  std::vector<std::array<int64_t, 2>> scales;
  if (scale.at(0).is_sequence()) {
    for (size_t i = 0; i < scale.size(); ++i) scales.push_back(read_pair(scale.at(i)));
  } else {
    scales.push_back(read_pair(scale));
  }
  const auto mode = cfg.get<std::string>("multiscale_mode", "value");
  SETDET_CHECK(mode == "value" || mode == "range", cfg["multiscale_mode"].where(),
               ": expected 'value' or 'range', got '", mode, "'");
  SETDET_CHECK(mode != "range" || scales.size() == 2, scale.where(),
               ": multiscale_mode 'range' needs exactly 2 scales, got ", scales.size());
  return std::make_shared<Resize>(std::move(scales), cfg.get<bool>("keep_ratio", true),
                                  mode == "range" ? Resize::Mode::kRange : Resize::Mode::kValue);
}

std::shared_ptr<Transform> build_random_flip(const Config& cfg) {
  cfg.check_keys({"prob", "direction"});
  if (cfg.has("direction")) {
    const auto dir = cfg.get<std::string>("direction");
    SETDET_CHECK(dir == "horizontal", cfg["direction"].where(),
                 ": only 'horizontal' is supported, got '", dir, "'");
  }
  const auto prob = cfg.get<double>("prob", 0.5);
  SETDET_CHECK(prob >= 0.0 && prob <= 1.0, cfg["prob"].where(),
               ": expected a probability in [0, 1], got ", prob);
  return std::make_shared<RandomFlip>(prob);
}

std::shared_ptr<Transform> build_normalize(const Config& cfg) {
  cfg.check_keys({"mean", "std", "to_rgb"});
  const auto mean = read_triple(cfg["mean"]);
  const auto std = read_triple(cfg["std"]);
  for (float s : std) {
    SETDET_CHECK(s > 0.f, cfg["std"].where(), ": expected positive values, got '",
                 cfg["std"].dump(), "'");
  }
  return std::make_shared<Normalize>(mean, std, cfg.get<bool>("to_rgb", true));
}

std::shared_ptr<Transform> build_pad(const Config& cfg) {
  cfg.check_keys({"size_divisor", "size", "pad_val"});
  SETDET_CHECK(cfg.has("size_divisor") != cfg.has("size"), cfg.where(),
               ": give exactly one of 'size_divisor' or 'size'");
  int64_t divisor = 0;
  std::array<int64_t, 2> size{0, 0};
  if (cfg.has("size_divisor")) {
    divisor = cfg.get<int64_t>("size_divisor");
    SETDET_CHECK(divisor > 0, cfg["size_divisor"].where(), ": expected a positive integer, got ",
                 divisor);
  } else {
    size = read_pair(cfg["size"]);
  }
  return std::make_shared<Pad>(divisor, size, cfg.get<double>("pad_val", 0.0));
}

SETDET_REGISTER(TransformRegistry, "Resize", build_resize);
SETDET_REGISTER(TransformRegistry, "RandomFlip", build_random_flip);
SETDET_REGISTER(TransformRegistry, "Normalize", build_normalize);
SETDET_REGISTER(TransformRegistry, "Pad", build_pad);

}  // namespace

}  // namespace setdet
