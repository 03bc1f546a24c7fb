// The interface every detector (one-stage, two-stage, DETR-like) offers to the runner, the
// evaluator and the CLI. Built from a config by DetectorRegistry().
#pragma once

#include <torch/nn/module.h>

#include <c10/core/ScalarType.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "setdet/config/registry.h"
#include "setdet/models/dedup/duplicate_removal.h"
#include "setdet/structures/batch.h"

namespace setdet {

// One image's detections, in ORIGINAL image pixels (the batch metas undo resize and flip).
struct Detections {
  at::Tensor boxes;   // [K, 4] float32 xyxy
  at::Tensor scores;  // [K] float32, descending
  at::Tensor labels;  // [K] int64, contiguous 0..C-1
};

class DetectorModel : public torch::nn::Module {
 public:
  // Training: named losses (each a scalar); the runner sums every entry whose name starts with
  // "loss" and logs all of them.
  virtual std::map<std::string, at::Tensor> losses(const Batch& batch) = 0;
  // Inference (call under torch::NoGradGuard, eval mode).
  virtual std::vector<Detections> predict(const Batch& batch) = 0;
  virtual int64_t num_classes() const = 0;
  // The network alone (backbone, neck, head: no pre- or post-processing) on a batch of
  // normalised, padded images: every output map, for benchmarks and export. Empty: this detector
  // has no network-only entry point.
  virtual std::vector<at::Tensor> forward_network(const at::Tensor& images) {
    (void)images;
    return {};
  }

  // Detectors that can decode one set of weights several ways (e.g. FCOS_PSS: NMS-free or
  // one-to-many + NMS) list them here; `setdet test` evaluates each. Empty: a single output.
  struct OutputMode {
    std::string name;        // the value set_output_mode() takes, e.g. "nms_free"
    std::string metric_tag;  // suffix of the metric names `setdet test` writes, e.g. "without_nms"
  };
  virtual std::vector<OutputMode> output_modes() const { return {}; }
  // Selects what predict() returns; an unknown name is an error listing output_modes().
  virtual void set_output_mode(const std::string& name) {
    SETDET_CHECK(false, "detector: unknown output mode '", name,
                 "' (this detector has a single output)");
  }
  virtual std::string output_mode() const { return {}; }

  // The duplicate removal predict() applies (test_cfg.nms), live: `setdet test --dedup` changes it
  // between evaluations of one checkpoint. nullptr: the current output has none (NMS-free).
  virtual DuplicateRemovalConfig* duplicate_removal() { return nullptr; }

  // The precision of the network (backbone, neck and dense / RPN head) in eval mode: nullopt is
  // float32; kBFloat16 runs it under CPU autocast (convolutions and matrix products in bfloat16
  // on oneDNN) and hands float32 maps to the rest, which stays float32. Training ignores it.
  // Detectors that do not support it (supports_inference_dtype() false) reject kBFloat16.
  void set_inference_dtype(std::optional<c10::ScalarType> dtype) {
    if (dtype == c10::kFloat) dtype.reset();
    SETDET_CHECK(!dtype || (*dtype == c10::kBFloat16 && supports_inference_dtype()),
                 "detector: ", dtype ? c10::toString(*dtype) : "float32",
                 " inference is not available for this detector (float32 only)");
    inference_dtype_ = dtype;
  }
  std::optional<c10::ScalarType> inference_dtype() const { return inference_dtype_; }
  virtual bool supports_inference_dtype() const { return false; }

 protected:
  // What the network's forward should run under (AutocastGuard): the inference dtype in eval
  // mode, nothing in training mode.
  std::optional<c10::ScalarType> network_autocast() const {
    return is_training() ? std::nullopt : inference_dtype_;
  }

 private:
  std::optional<c10::ScalarType> inference_dtype_;
};

SETDET_DEFINE_REGISTRY(DetectorRegistry, std::shared_ptr<DetectorModel>, "detector")

}  // namespace setdet
