// Samplers of assigned candidates (anchors of the RPN, RoIs of the R-CNN head): which positives
// and negatives enter the losses. RandomSampler is torchvision's BalancedPositiveNegativeSampler /
// MMDetection's RandomSampler; OHEMSampler keeps the hardest candidates by loss (Shrivastava et
// al. 2016; MMDetection paper Sec. 5.4).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "setdet/config/registry.h"

namespace setdet {

struct SampledCandidates {
  at::Tensor positives;  // [P] int64 indices of candidates whose match is a GT (>= 0)
  at::Tensor negatives;  // [Q] int64 indices of candidates matched as background (-1)
};

// The loss of each candidate listed in `indices` ([K] int64) -> [K] float, computed without
// gradient: what OHEM ranks by.
using CandidateLossFn = std::function<at::Tensor(const at::Tensor& indices)>;

class Sampler {
 public:
  Sampler(int64_t num, double pos_fraction, int64_t neg_pos_ub, bool add_gt_as_proposals);
  virtual ~Sampler() = default;

  // matched [N] int64: a GT index >= 0, kAnchorNegative (-1) or kAnchorIgnored (-2), as
  // AnchorAssigner::assign returns. At most num * pos_fraction positives, then negatives to fill
  // `num` (at most neg_pos_ub * max(1, positives) when neg_pos_ub >= 0). `loss` is required
  // when needs_loss().
  virtual SampledCandidates sample(const at::Tensor& matched,
                                   const CandidateLossFn& loss) const = 0;
  virtual bool needs_loss() const { return false; }

  int64_t num() const { return num_; }
  double pos_fraction() const { return pos_fraction_; }
  // R-CNN heads append the GT boxes to the proposals before assignment (torchvision, MMDetection).
  bool add_gt_as_proposals() const { return add_gt_as_proposals_; }

 protected:
  // (number of positives, number of negatives) to draw from the available counts.
  std::pair<int64_t, int64_t> quota(int64_t available_pos, int64_t available_neg) const;

 private:
  int64_t num_;
  double pos_fraction_;
  int64_t neg_pos_ub_;
  bool add_gt_as_proposals_;
};

// Uniformly random subsets (LibTorch's default generator: at::randperm), as torchvision's
// BalancedPositiveNegativeSampler. Registered as "RandomSampler"; keys: type, num, pos_fraction,
// neg_pos_ub (-1: no bound), add_gt_as_proposals.
class RandomSampler : public Sampler {
 public:
  using Sampler::Sampler;
  SampledCandidates sample(const at::Tensor& matched, const CandidateLossFn& loss) const override;
};

// The highest-loss positives and negatives (ties: lower index first). Registered as
// "OHEMSampler"; same keys as RandomSampler.
class OHEMSampler : public Sampler {
 public:
  using Sampler::Sampler;
  SampledCandidates sample(const at::Tensor& matched, const CandidateLossFn& loss) const override;
  bool needs_loss() const override { return true; }
};

SETDET_DEFINE_REGISTRY(SamplerRegistry, std::shared_ptr<Sampler>, "sampler")

}  // namespace setdet
