// One-to-one label assignment of FCOS_PSS / ATSS_PSS (Zhou et al., "Object Detection Made Simpler
// by Eliminating Heuristic NMS", Sec. 3.3): each GT j gets at most one positive point, chosen
// among the base assigner's positives Omega_j by the matching quality of Eq. (3).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace setdet {

enum class OneToOneMatcher {
  kHungarian,  // optimal bipartite matching (setdet_core linear_sum_assignment)
  kTop1,       // per GT the best candidate (the paper's "top-one selection")
};

// "hungarian" or "top1"; anything else is an error naming `where` and the value.
OneToOneMatcher parse_one_to_one_matcher(const std::string& name, const std::string& where);

// Eq. (3): Q[i, j] = 1[candidates[i, j]] * prob[i, j]^(1 - alpha) * iou[i, j]^alpha, with
// prob[i, j] = P_i(c_j) (Eq. (4)) and iou[i, j] = IoU(predicted box i, GT box j).
// prob, iou: [P, N] floating, in [0, 1]; candidates: [P, N] bool. Returns [P, N] float64.
at::Tensor matching_quality(const at::Tensor& prob, const at::Tensor& iou,
                            const at::Tensor& candidates, double alpha);

// For each GT j (column) the row i of its one positive, or -1 when candidates[:, j] is all false;
// returns [N] int64. Only candidate pairs are ever returned.
// kHungarian: a one-to-one matching with the most candidate pairs and, among those, the largest
//   sum of Q (a candidate of quality 0 still beats leaving a GT unmatched): linear_sum_assignment
//   maximising Q with non-candidate pairs priced at -(N + 1), pairs on those dropped afterwards.
// kTop1: argmax of Q[:, j] over the candidates of j (lowest row on ties); two GTs may then share
//   a row when their candidate sets overlap.
// quality: [P, N] floating, finite; candidates: [P, N] bool.
at::Tensor match_one_to_one(const at::Tensor& quality, const at::Tensor& candidates,
                            OneToOneMatcher matcher);

struct OneToOneOptions {
  double alpha = 0.8;  // Eq. (3); the paper's best "Mul." setting (Table 8)
  OneToOneMatcher matcher = OneToOneMatcher::kHungarian;
};

struct OneToOneTargets {
  at::Tensor labels;                 // [B, P, C] float 0/1, C-way one-to-one targets
  std::vector<at::Tensor> assigned;  // per image [N_i] int64 point index per GT, -1 if none
  int64_t num_positives = 0;         // matched GTs over the batch
};

// Eq. (3) per image with Omega_j = {i : matched[b, i] == j} (the base assigner's positives).
// prob: [B, P, C] predicted P_i(c) (Eq. (4)); pred_boxes: [B, P, 4] xyxy input pixels;
// matched: [B, P] int64 GT index or -1 (PointTargets::matched); gt_boxes[b]: [N_b, 4] xyxy;
// gt_labels[b]: [N_b] int64 in [0, C). Inputs are read without gradient.
OneToOneTargets assign_one_to_one(const at::Tensor& prob, const at::Tensor& pred_boxes,
                                  const at::Tensor& matched,
                                  const std::vector<at::Tensor>& gt_boxes,
                                  const std::vector<at::Tensor>& gt_labels,
                                  const OneToOneOptions& options);

}  // namespace setdet
