// Ranking loss of FCOS_PSS (Zhou et al., "Object Detection Made Simpler by Eliminating Heuristic
// NMS", Sec. 3.1.2, Eq. (2)).
#pragma once

#include <ATen/ATen.h>

namespace setdet {

// Eq. (2) for one image: 1 / (n- n+) * sum_{i-} sum_{i+} max(0, margin - pos[i+] + neg[i-]), the
// i- running over the `num_neg` highest of neg_scores (all of them when fewer).
// pos_scores: [n+] scores of the positives at their GT class; neg_scores: [M] scores of the
// negatives. Either empty: a zero that keeps both inputs in the graph.
at::Tensor ranking_loss(const at::Tensor& pos_scores, const at::Tensor& neg_scores,
                        double margin = 0.5, int64_t num_neg = 100);

}  // namespace setdet
