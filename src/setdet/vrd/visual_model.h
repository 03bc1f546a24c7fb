// The visual relationship model (Open Images 2019 VRD winner, Sec. 2.2 and 3.1): a CNN backbone
// (a registered backbone, e.g. setdet's ResNet with in_channels 5) on the masked union crop of a
// pair (vrd/union_crop.h), global average pooling of its last map, and a 3-layer MLP with ReLU
// and dropout before every layer, one sigmoid output per predicate. Trained with binary
// cross-entropy by a registered optimiser (AdamW) under a registered lr schedule (linear warm-up,
// cosine decay).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/io/pth.h"
#include "setdet/models/backbones/backbone.h"
#include "setdet/vrd/union_crop.h"

namespace setdet {

class VisualRelationNetImpl : public torch::nn::Module {
 public:
  // backbone: a backbone config node (its input channels must be kUnionCropChannels);
  // hidden: the widths of the MLP's two hidden layers.
  VisualRelationNetImpl(const Config& backbone, int64_t num_predicates,
                        std::array<int64_t, 2> hidden, double dropout);
  // crops [B, 5, S, S] -> logits [B, num_predicates]
  at::Tensor forward(const at::Tensor& crops);
  Backbone& backbone() { return *backbone_; }
  int64_t num_predicates() const { return num_predicates_; }

 private:
  std::shared_ptr<Backbone> backbone_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
  double dropout_;
  int64_t num_predicates_;
};
TORCH_MODULE(VisualRelationNet);

// Initialises `backbone` from `source` tensors named prefix + name (e.g. a detector checkpoint's
// "backbone.body."): equal shapes are copied; a tensor with more input planes (dim 1) than the
// source's, e.g. the first convolution of an RGB + masks backbone, gets the source's planes
// first and zeros after them. A tensor missing from the source or of another shape is an error
// naming `origin`. Returns the number of tensors set.
int64_t load_backbone_weights(const std::string& origin, const NamedTensors& source,
                              const std::string& prefix, Backbone& backbone);

// One training or inference pair: an image (index into the caller's image list), the two boxes
// (xyxy, pixels of that image) and, for training, one 0 / 1 label per predicate.
struct VisualPair {
  int32_t image = 0;
  std::array<float, 4> subject{}, object{};
  std::vector<uint8_t> labels;
};

struct VisualTrainOptions {
  UnionCropOptions crop;
  int64_t batch_size = 32;
  int64_t epochs = 1;
  int64_t max_iters = 0;  // > 0: stop there (the schedule's length), else epochs x batches
  uint64_t seed = 0;
  std::optional<c10::ScalarType> autocast;
  int64_t log_interval = 50;
  Config optimizer;                   // {type: AdamW, lr, weight_decay, ...}
  std::optional<Config> lr_schedule;  // {type: Cosine, warmup: linear, ...}
};

struct VisualTrainProgress {
  int64_t iter = 0, max_iters = 0, epoch = 0;
  double loss = 0.0;  // mean over the iterations since the last report
  double lr = 0.0;
  double pairs_per_second = 0.0;
  double seconds = 0.0;
};

// Trains `net` on `pairs` of `images` (CV_8UC3 BGR): each epoch visits the pairs in the order of
// Rng(seed, epoch); `progress` is called every log_interval iterations and at the end.
void train_visual_model(VisualRelationNet& net, const std::vector<cv::Mat>& images,
                        const std::vector<VisualPair>& pairs, const VisualTrainOptions& options,
                        const std::function<void(const VisualTrainProgress&)>& progress = {});

// Sigmoid probabilities [pairs x predicates] (row-major) in eval mode, `batch_size` crops at a
// time; the caller's `images` hold the pairs' images.
std::vector<float> predict_visual(VisualRelationNet& net, const std::vector<cv::Mat>& images,
                                  const std::vector<VisualPair>& pairs,
                                  const UnionCropOptions& crop, int64_t batch_size = 64);

}  // namespace setdet
