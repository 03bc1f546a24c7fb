// setdet's public C++ API: a trained detector loaded from a config and a checkpoint, run on OpenCV
// images. `setdet infer` is built on it, so both give the same detections.
//
//   #include <setdet/setdet.h>
//   setdet::Detector det("fcos.yaml", "latest.pt");             // or a torch.save .pth
//   for (const setdet::Detection& d : det.detect(cv::imread("photo.jpg")))
//     std::cout << d.class_name << " " << d.score << " " << d.x1 << "," << d.y1 << "\n";
//
// Link setdet::setdet (find_package(setdet)). Errors are setdet::Error (a std::runtime_error)
// whose message names the file, key or argument, what was expected and what was found.
//
// Thread safety: detect() may be called from several threads at once on one Detector (the
// forward pass runs under torch::NoGradGuard and shares no mutable state between calls);
// set_options() waits for running detect() calls and blocks new ones while it changes the
// duplicate removal.
#pragma once

#include <cstdint>
#include <memory>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/core/malloc_tuning.h"  // keep_freed_memory_for_reuse(): call it once at start

namespace setdet {

// One detection, in the pixels of the image given to detect().
struct Detection {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // box corners, x right, y down
  float score = 0;
  int64_t label = 0;       // 0 .. num_classes() - 1
  std::string class_name;  // class_names()[label]
};

// Options that may change between detect() calls (set_options).
struct DetectOptions {
  // Duplicate removal in the `setdet test --dedup` syntax, e.g. "nms:iou_threshold=0.5",
  // "soft_nms:method=gaussian,sigma=0.5", "matrix_nms", "none"; unset keys keep the config's
  // test_cfg.nms. Empty: the config's choice.
  std::string dedup;
  // Detections scoring below this are dropped (0: keep all the model returns).
  double score_threshold = 0.0;
  // At most this many detections per image, the highest scored (<= 0: all the model returns,
  // which the config's test_cfg.max_per_img bounds).
  int64_t max_detections = 0;
};

struct DetectorOptions {
  // Config overrides applied before building the model, as `setdet infer --set key.path=value`.
  std::vector<std::string> overrides;
  // Class names by label; empty: those of the config's test (else val) dataset when its
  // annotation file can be read, else "0", "1", ...
  std::vector<std::string> class_names;
  // A LibTorch device string ("cpu", "cuda:0", ...); must be available in this LibTorch build.
  std::string device = "cpu";
  // > 0: LibTorch's intra-op thread count (process-wide: at::set_num_threads); 0: unchanged.
  int threads = 0;
  // "float32", or "bfloat16": the network (backbone, neck, dense / RPN head) computes in bfloat16
  // (fast on CPUs with AVX512-BF16 or AMX; see docs/benchmarks.md for speed and AP), decoding and
  // duplicate removal stay float32. FCOS, ATSS, PSS, RetinaNet and Faster R-CNN.
  std::string precision = "float32";
  DetectOptions detect;
};

class Detector {
 public:
  // Builds the model of `config_path` (a setdet YAML config), loads `checkpoint_path` (a setdet
  // checkpoint .pt, or a torch.save state_dict .pth imported through the config's
  // checkpoint_import rules), folds BatchNorm into the convolutions and prepares the test-time
  // pipeline of the config's data.test (else data.val).
  Detector(const std::string& config_path, const std::string& checkpoint_path,
           const DetectorOptions& options = {});
  ~Detector();
  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // Detections in descending score order. `bgr`: CV_8UC3 (BGR, as cv::imread gives), any size;
  // CV_8UC1 (grey) and CV_8UC4 (BGRA) are converted to BGR first.
  std::vector<Detection> detect(const cv::Mat& bgr) const;
  // One forward pass over the batch (images padded to the largest); result i is image i's.
  std::vector<std::vector<Detection>> detect(const std::vector<cv::Mat>& images) const;

  void set_options(const DetectOptions& options);
  DetectOptions options() const;

  int64_t num_classes() const;
  const std::vector<std::string>& class_names() const;
  // Why class_names() are plain numbers ("" when they are real names).
  const std::string& class_names_warning() const;
  // The score from which to draw or report detections when none is chosen: the F1-best threshold
  // `setdet test` found for this checkpoint and stored beside it (CKPT_DIR/<stem>.
  // score_threshold.json, ignored once the checkpoint changes); nothing when there is none.
  // detect() does not apply it (DetectOptions.score_threshold does that).
  std::optional<double> drawing_threshold() const;
  // The file it came from ("" without one).
  const std::string& drawing_threshold_source() const;
  // The duplicate removal in use, e.g. "nms(iou 0.60)" ("" when the output has none).
  std::string describe_dedup() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace setdet
