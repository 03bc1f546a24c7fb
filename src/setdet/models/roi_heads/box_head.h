// The R-CNN box head: the shared 2fc head (torchvision's TwoMLPHead: fc6, fc7 with ReLU; Eq. (9)
// of the Relation Networks paper) optionally with object relation modules after each fc (the
// 2fc+RM head, Eq. (10): x = fc(x); x = x + RM(x) repeated r times; x = relu(x)), and the
// predictor (torchvision's FastRCNNPredictor: cls_score, bbox_pred).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include <optional>
#include <vector>

#include "setdet/layers/relation_module.h"

namespace setdet {

struct TwoMLPHeadOptions {
  TwoMLPHeadOptions(int64_t in_features, int64_t fc_dim)
      : in_features_(in_features), fc_dim_(fc_dim) {}
  TORCH_ARG(int64_t, in_features);  // C x 7 x 7 of the pooled RoI features
  TORCH_ARG(int64_t, fc_dim);       // 1024
  // {r1, r2} of Table 1 (c): relation modules after fc6 and after fc7.
  TORCH_ARG(int64_t, relations_fc6) = 0;
  TORCH_ARG(int64_t, relations_fc7) = 0;
  TORCH_ARG(std::optional<RelationModuleOptions>, relation) = std::nullopt;  // feature_dim = fc_dim
};

// Names: fc6, fc7 (torchvision), relation6.N, relation7.N.
class TwoMLPHeadImpl : public torch::nn::Module {
 public:
  explicit TwoMLPHeadImpl(const TwoMLPHeadOptions& options);

  // roi_feats [K, C, h, w] -> [K, fc_dim]. With relation modules, `boxes` [K, 4] are the RoIs
  // (input pixels) and `groups` the RoIs of each image in order (relations stay within an image):
  // per image (count, num_keys) — the first num_keys RoIs of the image are keys, the rest (GT
  // boxes appended in training) only queries.
  at::Tensor forward(const at::Tensor& roi_feats, const at::Tensor& boxes,
                     const std::vector<std::pair<int64_t, int64_t>>& groups);

  bool has_relations() const { return !relations6_.empty() || !relations7_.empty(); }
  const TwoMLPHeadOptions& options() const { return options_; }

 private:
  // `log_weights[g][i]`: the log geometric weight of modules[i] for image group g (undefined: the
  // module computes its own).
  at::Tensor relate(std::vector<RelationModule>& modules, at::Tensor x, const at::Tensor& boxes,
                    const std::vector<std::pair<int64_t, int64_t>>& groups,
                    const std::vector<std::vector<at::Tensor>>& log_weights);

  TwoMLPHeadOptions options_;
  torch::nn::Linear fc6_{nullptr}, fc7_{nullptr};
  std::vector<RelationModule> relations6_, relations7_;
};
TORCH_MODULE(TwoMLPHead);

// cls_score: fc_dim -> num_classes + 1 (background at index 0 as torchvision, or last as
// MMDetection); bbox_pred: fc_dim -> 4 x num_classes class-specific deltas (plus a background
// row first when background_first, as torchvision) or 4 (class-agnostic). Init: cls N(0, 0.01),
// bbox N(0, 0.001), zero biases (MMDetection).
class FastRCNNPredictorImpl : public torch::nn::Module {
 public:
  FastRCNNPredictorImpl(int64_t fc_dim, int64_t num_classes, bool class_agnostic,
                        bool background_first);

  struct Output {
    at::Tensor class_logits;  // [K, num_classes + 1], foreground 0..C-1 then background C
    at::Tensor deltas;  // [K, num_classes, 4] per foreground class (class-agnostic: [K, 1, 4])
  };
  Output forward(const at::Tensor& features);

  int64_t num_classes() const { return num_classes_; }
  bool class_agnostic() const { return class_agnostic_; }

 private:
  int64_t num_classes_;
  bool class_agnostic_, background_first_;
  torch::nn::Linear cls_score_{nullptr}, bbox_pred_{nullptr};
};
TORCH_MODULE(FastRCNNPredictor);

}  // namespace setdet
