#include "setdet/assign/deta_assigner.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "setdet/assign/max_iou_assigner.h"
#include "setdet/assign/sampler.h"

namespace setdet {

PositivePairs balance_positives(const PositivePairs& pairs, const at::Tensor& iou, int64_t k) {
  TORCH_CHECK(k > 0, "balance_positives: k must be positive, got ", k);
  TORCH_CHECK(iou.dim() == 2, "balance_positives: iou must be [M, N], got ", iou.sizes());
  if (pairs.gt.numel() == 0) return pairs;
  const auto uniq = at::_unique2(pairs.gt.to(at::kCPU), /*sorted=*/true, /*return_inverse=*/false,
                                 /*return_counts=*/true);
  const at::Tensor gts = std::get<0>(uniq);
  const at::Tensor counts = std::get<2>(uniq);
  const int64_t kk = std::min<int64_t>(k, iou.size(1));
  const at::Tensor top =
      std::get<1>(iou.index_select(0, gts.to(iou.device())).topk(kk, 1)).to(at::kCPU);
  std::vector<at::Tensor> pred, gt;
  for (int64_t i = 0; i < gts.numel(); ++i) {
    const int64_t c = std::min<int64_t>(counts[i].item<int64_t>(), kk);
    pred.push_back(top[i].narrow(0, 0, c));
    gt.push_back(at::full({c}, gts[i].item<int64_t>(), at::kLong));
  }
  return {at::cat(pred).to(pairs.pred.device()), at::cat(gt).to(pairs.gt.device())};
}

DetaIoUAssigner::DetaIoUAssigner(DetaIoUAssignerOptions options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.neg_iou_thr > 0 && o.neg_iou_thr <= o.pos_iou_thr,
              "DetaIoUAssigner: need 0 < neg_iou_thr <= pos_iou_thr, got ", o.neg_iou_thr, " and ",
              o.pos_iou_thr);
  TORCH_CHECK(std::isfinite(o.pos_fraction) && o.pos_fraction >= 0 && o.pos_fraction <= 1,
              "DetaIoUAssigner: pos_fraction must be in [0, 1], got ", o.pos_fraction);
  TORCH_CHECK(!o.max_k || *o.max_k > 0, "DetaIoUAssigner: max_k must be positive or null, got ",
              o.max_k.value_or(0));
}

DetaIoUAssignerOptions DetaIoUAssigner::stage1_defaults() { return {}; }

DetaIoUAssignerOptions DetaIoUAssigner::stage2_defaults() {
  DetaIoUAssignerOptions o;
  o.neg_iou_thr = 0.6;
  o.pos_iou_thr = 0.6;
  o.num_samples = 0;
  o.pos_fraction = 0.25;
  return o;
}

PositivePairs DetaIoUAssigner::assign(const at::Tensor& boxes, const at::Tensor& gt_boxes) const {
  TORCH_CHECK(
      boxes.dim() == 2 && boxes.size(1) == 4 && gt_boxes.dim() == 2 && gt_boxes.size(1) == 4,
      "DetaIoUAssigner: boxes must be [N, 4] and gt_boxes [M, 4], got ", boxes.sizes(), " and ",
      gt_boxes.sizes());
  const auto long_opts = boxes.options().dtype(at::kLong);
  if (gt_boxes.size(0) == 0 || boxes.size(0) == 0) {
    return {at::empty({0}, long_opts), at::empty({0}, long_opts)};
  }
  const at::Tensor b = boxes.detach().to(at::kFloat);
  const at::Tensor iou = pairwise_box_iou(gt_boxes.to(b.device(), at::kFloat), b);  // [M, N]
  const MaxIoUAssigner matcher(MaxIoUAssignerOptions()
                                   .pos_iou_thr(options_.pos_iou_thr)
                                   .neg_iou_thr(options_.neg_iou_thr)
                                   .allow_low_quality_matches(options_.allow_low_quality_matches));
  const at::Tensor matched = matcher.assign(b, gt_boxes.to(b.device(), at::kFloat));
  const int64_t num = options_.num_samples > 0 ? options_.num_samples : boxes.size(0);
  const RandomSampler sampler(num, options_.pos_fraction, /*neg_pos_ub=*/-1,
                              /*add_gt_as_proposals=*/false);
  const at::Tensor pred = std::get<0>(sampler.sample(matched, {}).positives.sort());
  PositivePairs pairs{pred, matched.index_select(0, pred)};
  if (options_.max_k) pairs = balance_positives(pairs, iou, *options_.max_k);
  return pairs;
}

DetaIoUAssignerOptions deta_assigner_options(const Config& cfg,
                                             const DetaIoUAssignerOptions& defaults) {
  cfg.check_keys(
      {"neg_iou_thr", "pos_iou_thr", "allow_low_quality_matches", "num_samples", "pos_fraction"});
  DetaIoUAssignerOptions o = defaults;
  o.neg_iou_thr = cfg.get<double>("neg_iou_thr", o.neg_iou_thr);
  o.pos_iou_thr = cfg.get<double>("pos_iou_thr", o.pos_iou_thr);
  o.allow_low_quality_matches =
      cfg.get<bool>("allow_low_quality_matches", o.allow_low_quality_matches);
  o.num_samples = cfg.get<int64_t>("num_samples", o.num_samples);
  o.pos_fraction = cfg.get<double>("pos_fraction", o.pos_fraction);
  SETDET_CHECK(o.neg_iou_thr > 0 && o.neg_iou_thr <= 1, cfg.where(),
               ".neg_iou_thr: expected a value in (0, 1], got ", o.neg_iou_thr);
  SETDET_CHECK(o.pos_iou_thr >= o.neg_iou_thr && o.pos_iou_thr <= 1, cfg.where(),
               ".pos_iou_thr: expected a value in [neg_iou_thr, 1] = [", o.neg_iou_thr,
               ", 1], got ", o.pos_iou_thr);
  SETDET_CHECK(o.pos_fraction >= 0 && o.pos_fraction <= 1, cfg.where(),
               ".pos_fraction: expected a value in [0, 1], got ", o.pos_fraction);
  return o;
}

}  // namespace setdet
