// FCOS_PSS / ATSS_PSS (Zhou et al., "Object Detection Made Simpler by Eliminating Heuristic NMS",
// 2021): FCOS (or FCOS with the ATSS assigner) plus a positive sample selector (PSS) head on the
// regression-tower features behind a stop-gradient. Training (Eq. (1)):
//   L = L_fcos + lambda1 * L_pss + lambda2 * L_rank
// with L_fcos FCOS's one-to-many losses unchanged, L_pss the focal loss of the product score
// P_i(c) = sigma(pss_i) sigma(s_i,c) sigma(ctr_i) (Eq. (4)) against one-to-one targets (Sec. 3.3,
// Eq. (3)) and L_rank the ranking loss of Eq. (2). One checkpoint decodes two ways: "nms_free"
// (P_i(c), top-k, no NMS) and "nms" (FCOS's output + NMS, the PSS head unused).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "setdet/assign/one_to_one.h"
#include "setdet/models/dense_heads/pss_head.h"
#include "setdet/models/detectors/fcos.h"

namespace setdet {

struct PSSTrainConfig {
  OneToOneOptions one_to_one;  // alpha 0.8, Hungarian
  // true (the paper): the PSS head reads detached regression features, and L_pss / L_rank see
  // sigma(s) and sigma(ctr) detached, so they change no FCOS/ATSS parameter. false: no detach
  // anywhere (the "w/o stop-grad" rows of the paper's Table 2).
  bool stop_gradient = true;
  double pss_weight = 1.0;    // lambda1 (Sec. 4.2.6)
  double focal_alpha = 0.25;  // L_pss focal loss, as FCOS's classification loss
  double focal_gamma = 2.0;
  double rank_weight = 0.25;   // lambda2 (Sec. 3.1)
  double rank_margin = 0.5;    // gamma of Eq. (2)
  int64_t rank_num_neg = 100;  // n- of Eq. (2)
};

struct PSSTestConfig {
  std::string output_mode = "nms_free";  // "nms_free" or "nms"
  double score_thr = 0.05;               // nms_free: on P_i(c) (no square root)
  int64_t max_per_img = 100;  // nms_free: top-k of P_i(c) over all levels, points and classes
};

class FCOSPSSDetector : public FCOSDetector {
 public:
  FCOSPSSDetector(FCOSParts parts, std::shared_ptr<PositiveSampleSelectorImpl> pss_head,
                  PSSTrainConfig train_cfg, PSSTestConfig pss_test_cfg);

  // FCOS's "loss_cls", "loss_bbox", "loss_centerness", "num_pos", plus "loss_pss" (lambda1 *
  // L_pss, normalised by the number of one-to-one positives of the batch, at least 1),
  // "loss_rank" (lambda2 * the mean of Eq. (2) over the images with a one-to-one positive) and
  // "num_pos_one_to_one".
  std::map<std::string, at::Tensor> losses(const Batch& batch) override;
  std::vector<Detections> predict(const Batch& batch) override;

  std::vector<OutputMode> output_modes() const override;
  void set_output_mode(const std::string& name) override;
  std::string output_mode() const override { return pss_test_cfg_.output_mode; }
  // FCOS's duplicate removal in output mode "nms"; none in "nms_free".
  DuplicateRemovalConfig* duplicate_removal() override;

  // FCOS's head outputs (with "reg_features") plus "pss" logits [B, 1, H, W] per level.
  DenseHeadOutputs forward_pss(const at::Tensor& images);
  std::vector<at::Tensor> forward_network(const at::Tensor& images) override {
    return flatten_outputs(forward_pss(images));
  }

  PositiveSampleSelectorImpl& pss_head() { return *pss_head_; }
  const PSSTrainConfig& train_cfg() const { return train_cfg_; }
  const PSSTestConfig& pss_test_cfg() const { return pss_test_cfg_; }

  // The "nms_free" decoding of forward_pss() outputs `out` over points `ps`: per image the
  // max_per_img highest P_i(c) above score_thr over all levels, points and classes, no NMS.
  std::vector<Detections> decode_nms_free(const DenseHeadOutputs& out, const PointSet& ps,
                                          const Batch& batch) const;

 private:
  std::shared_ptr<PositiveSampleSelectorImpl> pss_head_;
  PSSTrainConfig train_cfg_;
  PSSTestConfig pss_test_cfg_;
};

// Config keys: those of FCOS (build_fcos) plus
//   pss_head: {num_convs: 2, channels: <head width>, gn_groups: <head's gn_groups>}
//   pss_train_cfg: {alpha: 0.8, matcher: hungarian|top1, stop_gradient: true, pss_weight: 1.0,
//                   focal_alpha: 0.25, focal_gamma: 2.0, rank_weight: 0.25, rank_margin: 0.5,
//                   rank_num_neg: 100}
//   pss_test_cfg: {output_mode: nms_free|nms, score_thr: 0.05, max_per_img: 100}
// Registered as "FCOS_PSS" (default assigner FCOSAssigner) and "ATSS_PSS" (default assigner
// ATSSAssigner); Omega_j of Eq. (3) is the assigner's positives of GT j, whatever the assigner.
std::shared_ptr<FCOSPSSDetector> build_fcos_pss(const Config& cfg,
                                                const std::string& default_assigner);

}  // namespace setdet
