#include "setdet/losses/rank_loss.h"

#include <algorithm>

namespace setdet {

at::Tensor ranking_loss(const at::Tensor& pos_scores, const at::Tensor& neg_scores, double margin,
                        int64_t num_neg) {
  TORCH_CHECK(pos_scores.dim() == 1 && neg_scores.dim() == 1,
              "ranking_loss: pos_scores and neg_scores must be 1-D, got ", pos_scores.sizes(),
              " and ", neg_scores.sizes());
  TORCH_CHECK(num_neg > 0, "ranking_loss: num_neg must be positive, got ", num_neg);
  if (pos_scores.numel() == 0 || neg_scores.numel() == 0) {
    return (pos_scores.sum() + neg_scores.sum()) * 0.0;
  }
  const int64_t k = std::min<int64_t>(num_neg, neg_scores.numel());
  const at::Tensor neg = std::get<0>(neg_scores.topk(k));
  // [n+, n-] hinge terms
  return (margin - pos_scores.unsqueeze(1) + neg.unsqueeze(0)).clamp_min(0).mean();
}

}  // namespace setdet
