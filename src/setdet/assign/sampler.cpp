#include "setdet/assign/sampler.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace setdet {
namespace {

at::Tensor indices_where(const at::Tensor& mask) { return mask.nonzero().squeeze(1); }

// The `k` entries of `candidates` with the highest `loss` (descending; ties by position).
at::Tensor hardest(const at::Tensor& candidates, const CandidateLossFn& fn, int64_t k) {
  if (k <= 0 || candidates.numel() == 0) return candidates.narrow(0, 0, 0);
  const at::Tensor loss = fn(candidates).detach().to(at::kCPU, at::kFloat).reshape(-1);
  TORCH_CHECK(loss.numel() == candidates.numel(), "OHEMSampler: the loss has ", loss.numel(),
              " entries for ", candidates.numel(), " candidates");
  const at::Tensor order = std::get<1>(loss.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  return candidates.index_select(
      0, order.narrow(0, 0, std::min<int64_t>(k, order.numel())).to(candidates.device()));
}

}  // namespace

Sampler::Sampler(int64_t num, double pos_fraction, int64_t neg_pos_ub, bool add_gt_as_proposals)
    : num_(num),
      pos_fraction_(pos_fraction),
      neg_pos_ub_(neg_pos_ub),
      add_gt_as_proposals_(add_gt_as_proposals) {
  TORCH_CHECK(num_ > 0, "sampler: num must be > 0, got ", num_);
  TORCH_CHECK(std::isfinite(pos_fraction_) && pos_fraction_ >= 0 && pos_fraction_ <= 1,
              "sampler: pos_fraction must be in [0, 1], got ", pos_fraction_);
}

std::pair<int64_t, int64_t> Sampler::quota(int64_t available_pos, int64_t available_neg) const {
  // torchvision: int(batch_size_per_image * positive_fraction)
  const int64_t pos = std::min<int64_t>(available_pos, static_cast<int64_t>(num_ * pos_fraction_));
  int64_t neg = std::min<int64_t>(available_neg, num_ - pos);
  if (neg_pos_ub_ >= 0) neg = std::min<int64_t>(neg, neg_pos_ub_ * std::max<int64_t>(1, pos));
  return {pos, neg};
}

SampledCandidates RandomSampler::sample(const at::Tensor& matched, const CandidateLossFn&) const {
  const at::Tensor pos = indices_where(matched >= 0);
  const at::Tensor neg = indices_where(matched == -1);
  const auto [num_pos, num_neg] = quota(pos.numel(), neg.numel());
  const auto opts = at::TensorOptions().dtype(at::kLong);
  SampledCandidates out;
  out.positives =
      pos.index_select(0, at::randperm(pos.numel(), opts).narrow(0, 0, num_pos).to(pos.device()));
  out.negatives =
      neg.index_select(0, at::randperm(neg.numel(), opts).narrow(0, 0, num_neg).to(neg.device()));
  return out;
}

SampledCandidates OHEMSampler::sample(const at::Tensor& matched,
                                      const CandidateLossFn& loss) const {
  TORCH_CHECK(loss, "OHEMSampler: needs the candidates' losses");
  const at::Tensor pos = indices_where(matched >= 0);
  const at::Tensor neg = indices_where(matched == -1);
  const auto [num_pos, num_neg] = quota(pos.numel(), neg.numel());
  SampledCandidates out;
  out.positives = hardest(pos, loss, num_pos);
  out.negatives = hardest(neg, loss, num_neg);
  return out;
}

namespace {

template <typename T>
std::shared_ptr<Sampler> build_sampler(const Config& cfg) {
  cfg.check_keys({"type", "num", "pos_fraction", "neg_pos_ub", "add_gt_as_proposals"});
  const auto num = cfg.get<int64_t>("num", 512);
  const auto pos_fraction = cfg.get<double>("pos_fraction", 0.25);
  SETDET_CHECK(num > 0, cfg.where(), ".num: expected > 0, got ", num);
  SETDET_CHECK(std::isfinite(pos_fraction) && pos_fraction >= 0 && pos_fraction <= 1, cfg.where(),
               ".pos_fraction: expected a value in [0, 1], got ", pos_fraction);
  return std::make_shared<T>(num, pos_fraction, cfg.get<int64_t>("neg_pos_ub", -1),
                             cfg.get<bool>("add_gt_as_proposals", true));
}

}  // namespace

SETDET_REGISTER(SamplerRegistry, "RandomSampler", build_sampler<RandomSampler>);
SETDET_REGISTER(SamplerRegistry, "OHEMSampler", build_sampler<OHEMSampler>);

}  // namespace setdet
