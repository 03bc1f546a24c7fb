#include "setdet/models/roi_heads/box_head.h"

#include "setdet/layers/onednn_matmul.h"

#include <torch/nn/init.h>

#include <string>

namespace setdet {
namespace {

torch::nn::Linear linear(int64_t in, int64_t out, double std) {
  torch::nn::Linear l(in, out);
  if (std > 0) {
    torch::nn::init::normal_(l->weight, 0.0, std);
  } else {
    torch::nn::init::xavier_uniform_(l->weight);  // MMDetection's Shared2FCBBoxHead
  }
  torch::nn::init::zeros_(l->bias);
  return l;
}

}  // namespace

TwoMLPHeadImpl::TwoMLPHeadImpl(const TwoMLPHeadOptions& options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.in_features() > 0 && o.fc_dim() > 0,
              "TwoMLPHead: in_features and fc_dim must be positive, got ", o.in_features(), " and ",
              o.fc_dim());
  TORCH_CHECK(o.relations_fc6() >= 0 && o.relations_fc7() >= 0,
              "TwoMLPHead: relation counts must be >= 0, got ", o.relations_fc6(), " and ",
              o.relations_fc7());
  fc6_ = register_module("fc6", linear(o.in_features(), o.fc_dim(), 0.0));
  fc7_ = register_module("fc7", linear(o.fc_dim(), o.fc_dim(), 0.0));
  RelationModuleOptions rm = o.relation().value_or(RelationModuleOptions(o.fc_dim()));
  rm.feature_dim(o.fc_dim());
  for (int64_t i = 0; i < o.relations_fc6(); ++i) {
    relations6_.push_back(register_module("relation6_" + std::to_string(i), RelationModule(rm)));
  }
  for (int64_t i = 0; i < o.relations_fc7(); ++i) {
    relations7_.push_back(register_module("relation7_" + std::to_string(i), RelationModule(rm)));
  }
}

at::Tensor TwoMLPHeadImpl::relate(std::vector<RelationModule>& modules, at::Tensor x,
                                  const at::Tensor& boxes,
                                  const std::vector<std::pair<int64_t, int64_t>>& groups,
                                  const std::vector<std::vector<at::Tensor>>& log_weights) {
  if (modules.empty()) return x;
  std::vector<at::Tensor> parts;
  int64_t start = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto [count, keys] = groups[g];
    at::Tensor xi = x.narrow(0, start, count);
    const at::Tensor bi = boxes.narrow(0, start, count);
    for (size_t i = 0; i < modules.size(); ++i) {
      const bool given = g < log_weights.size() && i < log_weights[g].size();
      xi = modules[i]->forward(xi, bi, keys, given ? log_weights[g][i] : at::Tensor());
    }
    parts.push_back(xi);
    start += count;
  }
  TORCH_CHECK(start == x.size(0), "TwoMLPHead: the image groups cover ", start, " RoIs, got ",
              x.size(0));
  return parts.size() == 1 ? parts.front() : at::cat(parts, 0);
}

at::Tensor TwoMLPHeadImpl::forward(const at::Tensor& roi_feats, const at::Tensor& boxes,
                                   const std::vector<std::pair<int64_t, int64_t>>& groups) {
  TORCH_CHECK(roi_feats.dim() >= 2, "TwoMLPHead: roi_feats must be [K, ...], got ",
              roi_feats.sizes());
  at::Tensor x = roi_feats.flatten(1);
  TORCH_CHECK(x.size(1) == options_.in_features(), "TwoMLPHead: expected ", options_.in_features(),
              " features per RoI, got ", x.size(1));
  if (has_relations()) {
    TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(0) == x.size(0),
                "TwoMLPHead: relation modules need one box per RoI (", x.size(0), "), got ",
                boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
  }
  // The geometric terms of each image's RoIs for all relation modules in one pass over its box
  // pairs (they depend on the boxes alone).
  std::vector<std::vector<at::Tensor>> log6, log7;
  if (has_relations()) {
    std::vector<std::shared_ptr<RelationModuleImpl>> all;
    for (auto* list : {&relations6_, &relations7_}) {
      for (const auto& m : *list) all.push_back(m.ptr());
    }
    int64_t start = 0;
    for (const auto& [count, keys] : groups) {
      std::vector<at::Tensor> w;
      if (count > 0 && keys > 0) w = log_geometric_weights(all, boxes.narrow(0, start, count), keys);
      const auto split = w.begin() + std::min(w.size(), relations6_.size());
      log6.emplace_back(w.begin(), split);
      log7.emplace_back(split, w.end());
      start += count;
    }
  }
  x = at::relu(relate(relations6_, setdet::linear(x, fc6_), boxes, groups, log6));
  x = at::relu(relate(relations7_, setdet::linear(x, fc7_), boxes, groups, log7));
  return x;
}

FastRCNNPredictorImpl::FastRCNNPredictorImpl(int64_t fc_dim, int64_t num_classes,
                                             bool class_agnostic, bool background_first)
    : num_classes_(num_classes),
      class_agnostic_(class_agnostic),
      background_first_(background_first) {
  TORCH_CHECK(fc_dim > 0 && num_classes > 0,
              "FastRCNNPredictor: fc_dim and num_classes must be positive, got ", fc_dim, " and ",
              num_classes);
  cls_score_ = register_module("cls_score", linear(fc_dim, num_classes + 1, 0.01));
  // torchvision keeps a (never trained) background row in its class-specific regression,
  // MMDetection does not.
  const int64_t rows = class_agnostic ? 1 : num_classes + (background_first ? 1 : 0);
  bbox_pred_ = register_module("bbox_pred", linear(fc_dim, 4 * rows, 0.001));
}

FastRCNNPredictorImpl::Output FastRCNNPredictorImpl::forward(const at::Tensor& features) {
  at::Tensor logits = setdet::linear(features, cls_score_);
  at::Tensor deltas = setdet::linear(features, bbox_pred_);
  const int64_t k = features.size(0);
  Output out;
  if (background_first_) {
    // [bg, c_0 .. c_{C-1}] -> [c_0 .. c_{C-1}, bg]
    out.class_logits = at::cat({logits.narrow(1, 1, num_classes_), logits.narrow(1, 0, 1)}, 1);
  } else {
    out.class_logits = logits;
  }
  if (class_agnostic_) {
    out.deltas = deltas.reshape({k, 1, 4});
  } else {
    const at::Tensor d = deltas.reshape({k, -1, 4});
    out.deltas = background_first_ ? d.narrow(1, 1, num_classes_) : d;
  }
  return out;
}

}  // namespace setdet
