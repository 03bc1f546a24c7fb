// Region Proposal Network (Ren et al. 2015) with FPN (Lin et al. 2017) as torchvision's
// RegionProposalNetwork and MMDetection's RPNHead: anchors per level, an RPN head, max-IoU
// assignment (0.7 / 0.3, low-quality matches), a sampler (256, 50% positives), BCE objectness and
// smooth-L1 delta losses on the sampled anchors; proposals: per-level top-n by objectness, decode,
// clip, drop tiny boxes, NMS per level, top-n per image.
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "setdet/assign/max_iou_assigner.h"
#include "setdet/assign/sampler.h"
#include "setdet/losses/loss.h"
#include "setdet/models/dense_heads/rpn_head.h"
#include "setdet/structures/anchors.h"
#include "setdet/structures/batch.h"
#include "setdet/structures/box_coder.h"

namespace setdet {

// Proposal filtering of one phase (training or testing), torchvision's names.
struct ProposalConfig {
  int64_t pre_nms_top_n = 1000;   // per level, by objectness logit
  int64_t post_nms_top_n = 1000;  // per image, after NMS
  double nms_thr = 0.7;           // per level (batched by level)
  double min_size = 1e-3;         // boxes with a side < min_size (input pixels) are dropped
  double score_thr = 0.0;         // sigmoid(objectness) >= score_thr
};

struct RPNOptions {
  ProposalConfig train, test;
  // Anchors reaching more than allowed_border pixels outside the input are ignored in training
  // (MMDetection); < 0: every anchor counts (torchvision).
  double allowed_border = -1.0;
};

struct RPNOutput {
  std::vector<at::Tensor> proposals;  // per image [K_i, 4] float32 xyxy input pixels, detached
  std::vector<at::Tensor> scores;     // per image [K_i] sigmoid(objectness), descending per level
  std::map<std::string, at::Tensor> losses;  // "loss_rpn_cls", "loss_rpn_bbox" (training only)
};

class RegionProposalNetworkImpl : public torch::nn::Module {
 public:
  RegionProposalNetworkImpl(std::shared_ptr<RPNHeadImpl> head, AnchorGenerator anchors,
                            std::shared_ptr<AnchorAssigner> assigner,
                            std::shared_ptr<Sampler> sampler, std::shared_ptr<Loss> loss_cls,
                            std::shared_ptr<Loss> loss_bbox, RPNOptions options);

  // Proposals for `batch` from the pyramid `features`; with_losses: also the RPN losses against
  // batch.boxes (and the training proposal counts).
  RPNOutput forward(const std::vector<at::Tensor>& features, const Batch& batch, bool with_losses);

  RPNHeadImpl& head() { return *head_; }
  const RPNOptions& options() const { return options_; }
  RPNOptions& options() { return options_; }

 private:
  std::map<std::string, at::Tensor> losses(const at::Tensor& objectness, const at::Tensor& deltas,
                                           const at::Tensor& anchors, const Batch& batch);

  std::shared_ptr<RPNHeadImpl> head_;
  AnchorGenerator anchors_;
  std::shared_ptr<AnchorAssigner> assigner_;
  std::shared_ptr<Sampler> sampler_;
  std::shared_ptr<Loss> loss_cls_, loss_bbox_;
  DeltaXYWHBoxCoder coder_;  // weights (1, 1, 1, 1)
  RPNOptions options_;
};
TORCH_MODULE(RegionProposalNetwork);

// Config node (the detector's `rpn`; every key optional, defaults = torchvision's Faster R-CNN):
//   {anchor_generator: {sizes: [[32], [64], [128], [256], [512]], aspect_ratios: [0.5, 1, 2]},
//    head: {type: RPNHead},
//    assigner: {type: MaxIoUAssigner, pos_iou_thr: 0.7, neg_iou_thr: 0.3},
//    sampler: {type: RandomSampler, num: 256, pos_fraction: 0.5},
//    loss_cls: {type: BCEWithLogitsLoss}, loss_bbox: {type: SmoothL1Loss, beta: 0.1111111},
//    allowed_border: -1,
//    train_cfg: {pre_nms_top_n: 2000, post_nms_top_n: 2000, nms_thr: 0.7, min_size: 0.001},
//    test_cfg: {pre_nms_top_n: 1000, post_nms_top_n: 1000, nms_thr: 0.7, min_size: 0.001}}
// `in_shapes`: the neck's output shapes (one anchor size list per level).
RegionProposalNetwork build_rpn(const Config& cfg, const std::vector<ShapeSpec>& in_shapes);

}  // namespace setdet
