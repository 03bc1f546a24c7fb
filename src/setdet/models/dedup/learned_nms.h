// The learned duplicate-removal network of Hu et al., "Relation Networks for Object Detection"
// (CVPR 2018), Sec. 4.3-4.4 and Figure 3 (b), with the authors' code's defaults: per class the
// top-N detections by score s0; the rank (0 .. N-1 by s0) embedded by sines / cosines to
// rank_dim and projected to embed_dim (W_fR), the appearance feature projected to embed_dim
// (W_f), summed; one relation module on the class's boxes; a residual + ReLU; one logit per IoU
// threshold eta in {0.5, ..., 0.9} (W_s, bias -3). s1 = sigmoid(logit); the final score is
// s0 * mean_eta(s1).
//
// Training (Sec. 4.3): per class and eta, for each GT box the highest-s0 detection with IoU >= eta
// whose best GT is that box is correct (1), every other detection a duplicate (0); binary cross
// entropy on s0 * s1 with the correct terms weighted by 4, averaged over detections and
// thresholds. Computed in log space (log s0 + log sigmoid(z), log(1 - s0 s1) by log1mexp), so
// identical boxes, s0 = 1 or one detection never give NaN (the official code's issue 18).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "setdet/config/config.h"
#include "setdet/layers/relation_module.h"

namespace setdet {

struct DuplicateRemovalNetOptions {
  explicit DuplicateRemovalNetOptions(int64_t feature_dim) : feature_dim_(feature_dim) {}
  TORCH_ARG(int64_t, feature_dim);      // appearance features in (the head's fc7: 1024)
  TORCH_ARG(int64_t, embed_dim) = 128;  // W_f, W_fR outputs and the relation module's width
  TORCH_ARG(int64_t, rank_dim) = 1024;  // sinusoid rank embedding
  TORCH_ARG(int64_t, top_n) = 100;      // detections per class (the code's first_n)
  TORCH_ARG(std::vector<double>, iou_thresholds) = std::vector<double>{0.5, 0.6, 0.7, 0.8, 0.9};
  TORCH_ARG(double, pos_weight) = 4.0;
  TORCH_ARG(double, bias_init) = -3.0;
  TORCH_ARG(RelationModuleOptions, relation) = RelationModuleOptions(128);
  // Inference: classes whose best s0 is below class_score_thr are skipped; detections whose final
  // score is <= score_thr are dropped.
  TORCH_ARG(double, class_score_thr) = 0.01;
  TORCH_ARG(double, score_thr) = 1e-3;
  // true: only this network trains, on the outputs of a frozen detector (Sec. 4.3: the detector
  // runs in eval mode without gradient and its parameters are not trained); false: trained with
  // the detector, its loss reaching s0 and the appearance features (end to end, Sec. 4.4). Boxes
  // are always detached.
  TORCH_ARG(bool, frozen_detector) = false;
};

class DuplicateRemovalNetImpl : public torch::nn::Module {
 public:
  explicit DuplicateRemovalNetImpl(const DuplicateRemovalNetOptions& options);

  // One class of one image, detections sorted by s0 descending: boxes [N, 4], features [N, D]
  // -> logits [N, T] (T thresholds); batched, G such sets of N: [G, N, 4], [G, N, D] ->
  // [G, N, T].
  at::Tensor forward(const at::Tensor& boxes, const at::Tensor& features);

  // [N, T] float targets for detections sorted by s0 (boxes [N, 4]) and the GT boxes of their
  // class [G, 4].
  at::Tensor targets(const at::Tensor& boxes, const at::Tensor& gt_boxes) const;

  // Sum over [..., N, T] of the weighted BCE terms of s0 * sigmoid(logits) (log_s0 [..., N]).
  at::Tensor loss_sum(const at::Tensor& log_s0, const at::Tensor& logits,
                      const at::Tensor& targets) const;

  // log(s0 * mean_t sigmoid(logits)) [N]: the final score, in log space.
  static at::Tensor log_final_score(const at::Tensor& log_s0, const at::Tensor& logits);

  const DuplicateRemovalNetOptions& options() const { return options_; }

 private:
  DuplicateRemovalNetOptions options_;
  torch::nn::Linear appearance_{nullptr}, rank_{nullptr}, classifier_{nullptr};
  RelationModule relation_{nullptr};
};
TORCH_MODULE(DuplicateRemovalNet);

// log(1 - exp(a)) for a <= 0, accurate everywhere (Maechler 2012); a is clamped below -1e-7.
at::Tensor log1mexp(const at::Tensor& a);

// Config node {type: DuplicateRemovalNet, embed_dim, rank_dim, top_n, iou_thresholds,
// pos_weight, bias_init, relation: {num_heads, key_dim, geometry_dim, geometry},
// class_score_thr, score_thr, frozen_detector}.
DuplicateRemovalNetOptions duplicate_removal_net_options(const Config& cfg, int64_t feature_dim);

}  // namespace setdet
