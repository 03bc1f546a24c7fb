#include "setdet/assign/max_iou_assigner.h"

#include "setdet/core/error.h"

namespace setdet {

at::Tensor pairwise_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  TORCH_CHECK(boxes1.dim() == 2 && boxes1.size(1) == 4 && boxes2.dim() == 2 && boxes2.size(1) == 4,
              "pairwise_box_iou: boxes must be [M, 4] and [N, 4], got ", boxes1.sizes(), " and ",
              boxes2.sizes());
  const at::Tensor area1 =
      (boxes1.select(1, 2) - boxes1.select(1, 0)) * (boxes1.select(1, 3) - boxes1.select(1, 1));
  const at::Tensor area2 =
      (boxes2.select(1, 2) - boxes2.select(1, 0)) * (boxes2.select(1, 3) - boxes2.select(1, 1));
  const at::Tensor lt = at::max(boxes1.narrow(1, 0, 2).unsqueeze(1), boxes2.narrow(1, 0, 2));
  const at::Tensor rb = at::min(boxes1.narrow(1, 2, 2).unsqueeze(1), boxes2.narrow(1, 2, 2));
  const at::Tensor wh = (rb - lt).clamp_min(0);
  const at::Tensor inter = wh.select(2, 0) * wh.select(2, 1);
  return inter / (area1.unsqueeze(1) + area2.unsqueeze(0) - inter);
}

MaxIoUAssigner::MaxIoUAssigner(MaxIoUAssignerOptions options) : options_(options) {
  TORCH_CHECK(options_.neg_iou_thr() <= options_.pos_iou_thr(), "MaxIoUAssigner: neg_iou_thr (",
              options_.neg_iou_thr(), ") must be <= pos_iou_thr (", options_.pos_iou_thr(), ")");
}

at::Tensor MaxIoUAssigner::assign(const at::Tensor& anchors, const at::Tensor& gt_boxes) const {
  TORCH_CHECK(anchors.dim() == 2 && anchors.size(1) == 4,
              "MaxIoUAssigner: anchors must be [N, 4], got ", anchors.sizes());
  TORCH_CHECK(gt_boxes.dim() == 2 && gt_boxes.size(1) == 4,
              "MaxIoUAssigner: gt_boxes must be [M, 4], got ", gt_boxes.sizes());
  const auto long_opts = anchors.options().dtype(at::kLong);
  if (gt_boxes.size(0) == 0 || anchors.size(0) == 0) {
    return at::full({anchors.size(0)}, kAnchorNegative, long_opts);
  }
  const at::Tensor iou = pairwise_box_iou(gt_boxes.to(anchors.scalar_type()), anchors);  // [M, N]
  auto [best_iou, best_gt] = iou.max(0);
  at::Tensor matches = best_gt.clone();
  matches.masked_fill_(best_iou < options_.neg_iou_thr(), kAnchorNegative);
  matches.masked_fill_((best_iou >= options_.neg_iou_thr()) & (best_iou < options_.pos_iou_thr()),
                       kAnchorIgnored);
  if (options_.allow_low_quality_matches()) {
    const at::Tensor gt_best = std::get<0>(iou.max(1));  // [M]
    // (gt, anchor) pairs reaching their GT's best IoU, ties included.
    at::Tensor claimed = (iou == gt_best.unsqueeze(1)).any(0);
    if (options_.min_pos_iou() > 0) claimed &= best_iou > options_.min_pos_iou();
    matches = at::where(claimed, best_gt, matches);
  }
  return matches;
}

namespace {

std::shared_ptr<AnchorAssigner> build_max_iou_assigner(const Config& cfg) {
  cfg.check_keys(
      {"type", "pos_iou_thr", "neg_iou_thr", "allow_low_quality_matches", "min_pos_iou"});
  MaxIoUAssignerOptions o;
  o.pos_iou_thr(cfg.get<double>("pos_iou_thr", 0.5))
      .neg_iou_thr(cfg.get<double>("neg_iou_thr", 0.4))
      .allow_low_quality_matches(cfg.get<bool>("allow_low_quality_matches", true))
      .min_pos_iou(cfg.get<double>("min_pos_iou", 0.0));
  for (const auto& [key, v] : {std::pair{"pos_iou_thr", o.pos_iou_thr()},
                               {"neg_iou_thr", o.neg_iou_thr()},
                               {"min_pos_iou", o.min_pos_iou()}}) {
    SETDET_CHECK(v >= 0 && v <= 1, cfg.where(), ".", key, ": expected an IoU in [0, 1], got ", v);
  }
  SETDET_CHECK(o.neg_iou_thr() <= o.pos_iou_thr(), cfg.where(), ": neg_iou_thr (", o.neg_iou_thr(),
               ") must be <= pos_iou_thr (", o.pos_iou_thr(), ")");
  return std::make_shared<MaxIoUAssigner>(o);
}

}  // namespace

SETDET_REGISTER(AnchorAssignerRegistry, "MaxIoUAssigner", build_max_iou_assigner);

}  // namespace setdet
