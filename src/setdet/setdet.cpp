#include "setdet/setdet.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <mutex>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "setdet/config/config.h"
#include "setdet/core/io/score_threshold_file.h"
#include "setdet/data/dataset.h"
#include "setdet/data/loader.h"
#include "setdet/data/random.h"
#include "setdet/data/transforms.h"
#include "setdet/engine/autocast.h"
#include "setdet/io/state_dict.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/models/detector.h"

namespace setdet {

namespace {

// collate()'s padding: the test-time pipelines pad to 32 already, so this only evens out a batch.
constexpr int64_t kBatchSizeDivisor = 32;

// LibTorch errors (c10::Error) carry a C++ backtrace; the API throws setdet::Error with `where`.
template <typename F>
auto rethrow_as_setdet_error(const std::string& where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    throw Error(where + ": " + e.what_without_backtrace());
  }
}

c10::Device parse_device(const std::string& text) {
  c10::optional<c10::Device> device;
  try {
    device = c10::Device(text);
  } catch (const c10::Error&) {
    SETDET_CHECK(false, "DetectorOptions.device: expected a LibTorch device such as \"cpu\" or ",
                 "\"cuda:0\", got \"", text, "\"");
  }
  SETDET_CHECK(device->is_cpu() || (device->is_cuda() && at::hasCUDA()),
               "DetectorOptions.device: \"", text,
               "\" is not available in this LibTorch build (it has: cpu",
               at::hasCUDA() ? ", cuda" : "", ")");
  return *device;
}

// An owned BGR copy of image `index` (the pipeline must not write into the caller's pixels).
cv::Mat owned_bgr(const cv::Mat& image, size_t index) {
  SETDET_CHECK(!image.empty(), "Detector::detect: image ", index, " is empty");
  cv::Mat bgr;
  switch (image.type()) {
    case CV_8UC3:
      image.copyTo(bgr);
      break;
    case CV_8UC1:
      cv::cvtColor(image, bgr, cv::COLOR_GRAY2BGR);
      break;
    case CV_8UC4:
      cv::cvtColor(image, bgr, cv::COLOR_BGRA2BGR);
      break;
    default:
      SETDET_CHECK(false, "Detector::detect: image ", index,
                   ": expected 8-bit BGR (CV_8UC3), grey (CV_8UC1) or BGRA (CV_8UC4), got ",
                   "OpenCV type ", image.type(), " (depth ", image.depth(), ", ", image.channels(),
                   " channels)");
  }
  return bgr;
}

DuplicateRemovalConfig resolve_dedup(const std::string& spec, const DuplicateRemovalConfig& base) {
  return spec.empty() ? base : parse_duplicate_removal(spec, "DetectOptions.dedup", base);
}

void check_options(const DetectOptions& o) {
  SETDET_CHECK(o.score_threshold >= 0.0 && o.score_threshold <= 1.0,
               "DetectOptions.score_threshold: expected a value in [0, 1], got ",
               o.score_threshold);
}

}  // namespace

struct Detector::Impl {
  std::shared_ptr<DetectorModel> model;
  std::vector<std::shared_ptr<Transform>> pipeline;
  std::vector<std::string> class_names;
  c10::Device device{c10::kCPU};
  // The model's duplicate removal as configured (null: its output has none).
  std::optional<DuplicateRemovalConfig> configured_dedup;
  DetectOptions options;
  std::optional<double> drawing_threshold;
  std::string drawing_threshold_source;
  // detect() holds it shared, set_options() exclusively (it rewrites the model's test_cfg.nms).
  mutable std::shared_mutex mutex;

  void apply(const DetectOptions& o) {
    check_options(o);
    if (!o.dedup.empty()) {
      SETDET_CHECK(configured_dedup.has_value(), "DetectOptions.dedup \"", o.dedup,
                   "\": this detector's output has no duplicate-removal step to replace");
    }
    if (configured_dedup) *model->duplicate_removal() = resolve_dedup(o.dedup, *configured_dedup);
    options = o;
  }

  void load_class_names(const Config& cfg, const DetectorOptions& o) {
    const int64_t n = model->num_classes();
    if (!o.class_names.empty()) {
      SETDET_CHECK(static_cast<int64_t>(o.class_names.size()) == n,
                   "DetectorOptions.class_names: the model has ", n, " classes, got ",
                   o.class_names.size(), " names");
      class_names = o.class_names;
      return;
    }
    const Config split = cfg["data"].has("test") ? cfg["data"]["test"] : cfg["data"]["val"];
    try {
      class_names = DatasetRegistry().build(split["dataset"])->class_names();
      if (static_cast<int64_t>(class_names.size()) != n) {
        class_names_warning = split["dataset"].where() + " has " +
                              std::to_string(class_names.size()) + " classes, the model " +
                              std::to_string(n);
      }
    } catch (const Error& e) {
      class_names_warning = e.what();
    }
    if (!class_names_warning.empty()) {
      class_names.clear();
      for (int64_t c = 0; c < n; ++c) class_names.push_back(std::to_string(c));
    }
  }
  std::string class_names_warning;

  std::vector<std::vector<Detection>> run(const std::vector<cv::Mat>& images) const {
    if (images.empty()) return {};
    std::vector<Sample> samples;
    samples.reserve(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      Sample sample = image_sample(owned_bgr(images[i], i));
      Rng rng({0, 0});
      apply_pipeline(pipeline, sample, rng);
      samples.push_back(std::move(sample));
    }
    Batch batch = collate(samples, kBatchSizeDivisor);
    std::shared_lock<std::shared_mutex> lock(mutex);
    const DetectOptions o = options;
    std::vector<Detections> dets;
    {
      torch::NoGradGuard no_grad;
      if (device != batch.images.device()) batch.images = batch.images.to(device);
      dets = model->predict(batch);
    }
    lock.unlock();
    std::vector<std::vector<Detection>> out(dets.size());
    for (size_t i = 0; i < dets.size(); ++i) {
      const at::Tensor boxes = dets[i].boxes.to(at::kCPU).contiguous();
      const at::Tensor scores = dets[i].scores.to(at::kCPU).contiguous();
      const at::Tensor labels = dets[i].labels.to(at::kCPU).contiguous();
      const auto b = boxes.accessor<float, 2>();
      const auto s = scores.accessor<float, 1>();
      const auto l = labels.accessor<int64_t, 1>();
      for (int64_t k = 0; k < scores.size(0); ++k) {
        if (s[k] < o.score_threshold) continue;
        if (o.max_detections > 0 && static_cast<int64_t>(out[i].size()) >= o.max_detections) break;
        out[i].push_back({b[k][0], b[k][1], b[k][2], b[k][3], s[k], l[k],
                          class_names.at(static_cast<size_t>(l[k]))});
      }
    }
    return out;
  }
};

Detector::Detector(const std::string& config_path, const std::string& checkpoint_path,
                   const DetectorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  const std::string where =
      "setdet::Detector(\"" + config_path + "\", \"" + checkpoint_path + "\")";
  rethrow_as_setdet_error(where, [&] {
    impl_->device = parse_device(options.device);
    SETDET_CHECK(options.threads >= 0, "DetectorOptions.threads: expected >= 0, got ",
                 options.threads);
    if (options.threads > 0) at::set_num_threads(options.threads);
    Config cfg = Config::load(config_path);
    for (const auto& s : options.overrides) cfg.set_override(s);
    SETDET_CHECK(cfg["data"].has("test") || cfg["data"].has("val"), cfg.file(),
                 ": a detector needs data.test or data.val (their pipeline is the test-time one)");
    const Config data = cfg["data"];
    const Config dataset = (data.has("test") ? data["test"] : data["val"])["dataset"];
    impl_->pipeline = build_pipeline(dataset["pipeline"]);
    for (const auto& t : impl_->pipeline) {
      SETDET_CHECK(dynamic_cast<const RandomFlip*>(t.get()) == nullptr, dataset.where(),
                   ".pipeline: a test-time pipeline must not flip randomly");
    }
    impl_->model = DetectorRegistry().build(cfg["model"]);
    load_model_weights(checkpoint_path, *impl_->model, cfg);
    impl_->model->eval();
    impl_->model->set_inference_dtype(parse_precision(options.precision, "DetectorOptions.precision"));
    // BatchNorm folded into the convolutions, weights prepacked for oneDNN (same output)
    fuse_for_inference(*impl_->model);
    impl_->model->to(impl_->device);
    if (const DuplicateRemovalConfig* d = impl_->model->duplicate_removal()) {
      impl_->configured_dedup = *d;
    }
    impl_->load_class_names(cfg, options);
    impl_->apply(options.detect);
    if (const auto stored = read_score_threshold(checkpoint_path)) {
      impl_->drawing_threshold = stored->point.score_threshold;
      impl_->drawing_threshold_source = stored->path;
    }
  });
}

Detector::~Detector() = default;
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;

std::vector<Detection> Detector::detect(const cv::Mat& bgr) const {
  return detect(std::vector<cv::Mat>{bgr}).at(0);
}

std::vector<std::vector<Detection>> Detector::detect(const std::vector<cv::Mat>& images) const {
  return rethrow_as_setdet_error("setdet::Detector::detect", [&] { return impl_->run(images); });
}

void Detector::set_options(const DetectOptions& options) {
  std::unique_lock<std::shared_mutex> lock(impl_->mutex);
  rethrow_as_setdet_error("setdet::Detector::set_options", [&] { impl_->apply(options); });
}

DetectOptions Detector::options() const {
  std::shared_lock<std::shared_mutex> lock(impl_->mutex);
  return impl_->options;
}

int64_t Detector::num_classes() const { return impl_->model->num_classes(); }

const std::vector<std::string>& Detector::class_names() const { return impl_->class_names; }

const std::string& Detector::class_names_warning() const { return impl_->class_names_warning; }

std::optional<double> Detector::drawing_threshold() const { return impl_->drawing_threshold; }

const std::string& Detector::drawing_threshold_source() const {
  return impl_->drawing_threshold_source;
}

std::string Detector::describe_dedup() const {
  std::shared_lock<std::shared_mutex> lock(impl_->mutex);
  const DuplicateRemovalConfig* d = impl_->model->duplicate_removal();
  return d ? d->describe() : "";
}

}  // namespace setdet
