#include "setdet/models/dedup/learned_nms.h"

#include <torch/nn/init.h>

#include <cmath>

#include "setdet/assign/max_iou_assigner.h"
#include "setdet/layers/onednn_matmul.h"

namespace setdet {
namespace {

torch::nn::Linear normal_linear(int64_t in, int64_t out, double bias) {
  torch::nn::Linear l(in, out);
  torch::nn::init::normal_(l->weight, 0.0, 0.01);
  torch::nn::init::constant_(l->bias, bias);
  return l;
}

}  // namespace

at::Tensor log1mexp(const at::Tensor& a) {
  const at::Tensor x = a.clamp_max(-1e-7);
  // log(-expm1(x)) near 0, log1p(-exp(x)) below -log 2
  return at::where(x > -M_LN2, at::log(-at::expm1(x)), at::log1p(-at::exp(x)));
}

DuplicateRemovalNetImpl::DuplicateRemovalNetImpl(const DuplicateRemovalNetOptions& options)
    : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.feature_dim() > 0 && o.embed_dim() > 0, "DuplicateRemovalNet: feature_dim and ",
              "embed_dim must be positive, got ", o.feature_dim(), " and ", o.embed_dim());
  TORCH_CHECK(o.rank_dim() > 0 && o.rank_dim() % 2 == 0,
              "DuplicateRemovalNet: rank_dim must be a positive even number, got ", o.rank_dim());
  TORCH_CHECK(o.top_n() > 0, "DuplicateRemovalNet: top_n must be positive, got ", o.top_n());
  TORCH_CHECK(!o.iou_thresholds().empty(), "DuplicateRemovalNet: needs at least one IoU threshold");
  for (double t : o.iou_thresholds()) {
    TORCH_CHECK(std::isfinite(t) && t > 0 && t <= 1,
                "DuplicateRemovalNet: IoU thresholds must be in (0, 1], got ", t);
  }
  TORCH_CHECK(std::isfinite(o.pos_weight()) && o.pos_weight() > 0,
              "DuplicateRemovalNet: pos_weight must be > 0, got ", o.pos_weight());
  appearance_ = register_module("appearance", normal_linear(o.feature_dim(), o.embed_dim(), 0.0));
  rank_ = register_module("rank", normal_linear(o.rank_dim(), o.embed_dim(), 0.0));
  RelationModuleOptions rm = o.relation();
  rm.feature_dim(o.embed_dim());
  relation_ = register_module("relation", RelationModule(rm));
  classifier_ = register_module(
      "classifier",
      normal_linear(o.embed_dim(), static_cast<int64_t>(o.iou_thresholds().size()), o.bias_init()));
}

at::Tensor DuplicateRemovalNetImpl::forward(const at::Tensor& boxes, const at::Tensor& features) {
  TORCH_CHECK((features.dim() == 2 || features.dim() == 3) &&
                  features.size(-1) == options_.feature_dim(),
              "DuplicateRemovalNet: features must be [N, ", options_.feature_dim(), "] or [G, N, ",
              options_.feature_dim(), "], got ", features.sizes());
  TORCH_CHECK(boxes.dim() == features.dim() && boxes.size(-1) == 4 &&
                  boxes.sizes().slice(0, boxes.dim() - 1) ==
                      features.sizes().slice(0, features.dim() - 1),
              "DuplicateRemovalNet: boxes must be [", features.sizes().slice(0, features.dim() - 1),
              ", 4], got ", boxes.sizes());
  const int64_t n = features.size(-2);
  const at::Tensor ranks = at::arange(n, features.options()).unsqueeze(1);
  const at::Tensor rank_emb = sinusoid_embedding(ranks, options_.rank_dim(), 1.0, 1000.0);
  at::Tensor x = linear(features, appearance_) + linear(rank_emb, rank_);
  // boxes in float32 (float64 for a float64 model) even under autocast: see RelationModule
  x = at::relu(relation_(
      x, boxes.detach().to(x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat)));
  return linear(x, classifier_);
}

at::Tensor DuplicateRemovalNetImpl::targets(const at::Tensor& boxes,
                                            const at::Tensor& gt_boxes) const {
  const int64_t n = boxes.size(0);
  const auto& thresholds = options_.iou_thresholds();
  const int64_t t = static_cast<int64_t>(thresholds.size());
  at::Tensor out = at::zeros({n, t}, boxes.options().dtype(at::kFloat));
  if (n == 0 || gt_boxes.size(0) == 0) return out;
  const at::Tensor iou =
      pairwise_box_iou(boxes.detach().to(at::kCPU, at::kFloat), gt_boxes.to(at::kCPU, at::kFloat))
          .nan_to_num(0.0);  // [N, G]
  const auto [best_iou, best_gt] = iou.max(1);
  const auto bi = best_iou.accessor<float, 1>();
  const auto bg = best_gt.accessor<int64_t, 1>();
  at::Tensor cpu = at::zeros({n, t}, at::kFloat);
  auto acc = cpu.accessor<float, 2>();
  std::vector<char> taken(static_cast<size_t>(gt_boxes.size(0)));
  for (int64_t k = 0; k < t; ++k) {
    std::fill(taken.begin(), taken.end(), 0);
    for (int64_t i = 0; i < n; ++i) {  // descending s0: the first detection of a GT is correct
      if (bi[i] >= thresholds[k] && !taken[bg[i]]) {
        taken[bg[i]] = 1;
        acc[i][k] = 1.0f;
      }
    }
  }
  return cpu.to(out.device());
}

at::Tensor DuplicateRemovalNetImpl::loss_sum(const at::Tensor& log_s0, const at::Tensor& logits,
                                             const at::Tensor& targets) const {
  const at::Tensor log_p = log_s0.unsqueeze(-1) + at::log_sigmoid(logits);  // log(s0 * s1)
  const at::Tensor terms =
      -(options_.pos_weight() * targets * log_p + (1.0 - targets) * log1mexp(log_p));
  return terms.sum();
}

at::Tensor DuplicateRemovalNetImpl::log_final_score(const at::Tensor& log_s0,
                                                    const at::Tensor& logits) {
  return log_s0 + at::sigmoid(logits).mean(1).log();
}

DuplicateRemovalNetOptions duplicate_removal_net_options(const Config& cfg, int64_t feature_dim) {
  cfg.check_keys({"type", "embed_dim", "rank_dim", "top_n", "iou_thresholds", "pos_weight",
                  "bias_init", "relation", "class_score_thr", "score_thr", "frozen_detector"});
  SETDET_CHECK(cfg.get<std::string>("type", "DuplicateRemovalNet") == "DuplicateRemovalNet",
               cfg.where(), ".type: expected DuplicateRemovalNet, got '",
               cfg.get<std::string>("type"), "'");
  DuplicateRemovalNetOptions o(feature_dim);
  o.embed_dim(cfg.get<int64_t>("embed_dim", o.embed_dim()))
      .rank_dim(cfg.get<int64_t>("rank_dim", o.rank_dim()))
      .top_n(cfg.get<int64_t>("top_n", o.top_n()))
      .iou_thresholds(cfg.get<std::vector<double>>("iou_thresholds", o.iou_thresholds()))
      .pos_weight(cfg.get<double>("pos_weight", o.pos_weight()))
      .bias_init(cfg.get<double>("bias_init", o.bias_init()))
      .class_score_thr(cfg.get<double>("class_score_thr", o.class_score_thr()))
      .score_thr(cfg.get<double>("score_thr", o.score_thr()))
      .frozen_detector(cfg.get<bool>("frozen_detector", o.frozen_detector()));
  SETDET_CHECK(o.embed_dim() > 0, cfg.where(), ".embed_dim: expected > 0, got ", o.embed_dim());
  SETDET_CHECK(o.rank_dim() > 0 && o.rank_dim() % 2 == 0, cfg.where(),
               ".rank_dim: expected a positive even number, got ", o.rank_dim());
  SETDET_CHECK(o.top_n() > 0, cfg.where(), ".top_n: expected > 0, got ", o.top_n());
  SETDET_CHECK(!o.iou_thresholds().empty(), cfg.where(), ".iou_thresholds: expected at least one");
  for (double t : o.iou_thresholds()) {
    SETDET_CHECK(std::isfinite(t) && t > 0 && t <= 1, cfg.where(),
                 ".iou_thresholds: expected values in (0, 1], got ", t);
  }
  SETDET_CHECK(std::isfinite(o.pos_weight()) && o.pos_weight() > 0, cfg.where(),
               ".pos_weight: expected > 0, got ", o.pos_weight());
  SETDET_CHECK(std::isfinite(o.bias_init()), cfg.where(), ".bias_init: expected a finite number");
  SETDET_CHECK(std::isfinite(o.class_score_thr()) && std::isfinite(o.score_thr()), cfg.where(),
               ": class_score_thr and score_thr must be finite");
  o.relation(cfg.has("relation") ? relation_module_options(cfg["relation"], o.embed_dim())
                                 : RelationModuleOptions(o.embed_dim()));
  return o;
}

}  // namespace setdet
