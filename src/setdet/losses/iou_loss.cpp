#include "setdet/losses/iou_loss.h"

namespace setdet {
namespace {

void check_boxes(const at::Tensor& b, const char* fn, const char* arg) {
  TORCH_CHECK(b.dim() == 2 && b.size(1) == 4, fn, ": ", arg, " must be [N, 4], got ", b.sizes());
  TORCH_CHECK(b.is_floating_point(), fn, ": ", arg, " must be floating point, got ",
              b.scalar_type());
}

void check_aligned(const at::Tensor& a, const at::Tensor& b, const char* fn) {
  check_boxes(a, fn, "boxes1");
  check_boxes(b, fn, "boxes2");
  TORCH_CHECK(a.size(0) == b.size(0), fn,
              ": boxes1 and boxes2 must have the same number of rows, got ", a.size(0), " and ",
              b.size(0));
}

}  // namespace

at::Tensor generalized_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_boxes(boxes1, "generalized_box_iou", "boxes1");
  check_boxes(boxes2, "generalized_box_iou", "boxes2");
  const at::Tensor a = boxes1.unsqueeze(1);  // [N, 1, 4]
  const at::Tensor b = boxes2.unsqueeze(0);  // [1, M, 4]
  const at::Tensor area1 = (a.select(2, 2) - a.select(2, 0)) * (a.select(2, 3) - a.select(2, 1));
  const at::Tensor area2 = (b.select(2, 2) - b.select(2, 0)) * (b.select(2, 3) - b.select(2, 1));
  const at::Tensor lt = at::max(a.slice(2, 0, 2), b.slice(2, 0, 2));
  const at::Tensor rb = at::min(a.slice(2, 2, 4), b.slice(2, 2, 4));
  const at::Tensor wh = (rb - lt).clamp_min(0);
  const at::Tensor inter = wh.select(2, 0) * wh.select(2, 1);
  const at::Tensor uni = area1 + area2 - inter;
  const at::Tensor iou = inter / uni;
  const at::Tensor lt_c = at::min(a.slice(2, 0, 2), b.slice(2, 0, 2));
  const at::Tensor rb_c = at::max(a.slice(2, 2, 4), b.slice(2, 2, 4));
  const at::Tensor wh_c = (rb_c - lt_c).clamp_min(0);
  const at::Tensor area_c = wh_c.select(2, 0) * wh_c.select(2, 1);
  return iou - (area_c - uni) / area_c;
}

at::Tensor giou_loss(const at::Tensor& boxes1, const at::Tensor& boxes2, double eps) {
  check_aligned(boxes1, boxes2, "giou_loss");
  const auto c1 = boxes1.unbind(1);
  const auto c2 = boxes2.unbind(1);
  const at::Tensor xkis1 = at::max(c1[0], c2[0]), ykis1 = at::max(c1[1], c2[1]);
  const at::Tensor xkis2 = at::min(c1[2], c2[2]), ykis2 = at::min(c1[3], c2[3]);
  const at::Tensor inter = at::where((ykis2 > ykis1) & (xkis2 > xkis1),
                                     (xkis2 - xkis1) * (ykis2 - ykis1), at::zeros_like(xkis1));
  const at::Tensor uni =
      (c1[2] - c1[0]) * (c1[3] - c1[1]) + (c2[2] - c2[0]) * (c2[3] - c2[1]) - inter;
  const at::Tensor iou = inter / (uni + eps);
  const at::Tensor xc1 = at::min(c1[0], c2[0]), yc1 = at::min(c1[1], c2[1]);
  const at::Tensor xc2 = at::max(c1[2], c2[2]), yc2 = at::max(c1[3], c2[3]);
  const at::Tensor area_c = (xc2 - xc1) * (yc2 - yc1);
  return 1 - (iou - (area_c - uni) / (area_c + eps));
}

at::Tensor aligned_box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2, double eps) {
  check_aligned(boxes1, boxes2, "aligned_box_iou");
  const auto c1 = boxes1.unbind(1);
  const auto c2 = boxes2.unbind(1);
  const at::Tensor w = (at::min(c1[2], c2[2]) - at::max(c1[0], c2[0])).clamp_min(0);
  const at::Tensor h = (at::min(c1[3], c2[3]) - at::max(c1[1], c2[1])).clamp_min(0);
  const at::Tensor inter = w * h;
  const at::Tensor uni =
      (c1[2] - c1[0]) * (c1[3] - c1[1]) + (c2[2] - c2[0]) * (c2[3] - c2[1]) - inter;
  return inter / uni.clamp_min(eps);
}

at::Tensor iou_loss(const at::Tensor& boxes1, const at::Tensor& boxes2, IoULossMode mode,
                    double eps) {
  const at::Tensor u = aligned_box_iou(boxes1, boxes2, eps).clamp_min(eps);
  switch (mode) {
    case IoULossMode::kLinear:
      return 1 - u;
    case IoULossMode::kSquare:
      return 1 - u.square();
    case IoULossMode::kLog:
      break;
  }
  return -u.log();
}

at::Tensor bounded_iou_loss(const at::Tensor& pred, const at::Tensor& target, double beta,
                            double eps) {
  check_aligned(pred, target, "bounded_iou_loss");
  TORCH_CHECK(beta > 0, "bounded_iou_loss: beta must be > 0, got ", beta);
  const auto p = pred.unbind(1);
  const auto t = target.detach().unbind(1);
  const at::Tensor pw = p[2] - p[0], ph = p[3] - p[1];
  const at::Tensor tw = t[2] - t[0], th = t[3] - t[1];
  const at::Tensor dx = ((t[0] + t[2]) * 0.5 - (p[0] + p[2]) * 0.5).abs();
  const at::Tensor dy = ((t[1] + t[3]) * 0.5 - (p[1] + p[3]) * 0.5).abs();
  const at::Tensor cost = at::stack({1 - ((tw - 2 * dx) / (tw + 2 * dx + eps)).clamp_min(0),
                                     1 - ((th - 2 * dy) / (th + 2 * dy + eps)).clamp_min(0),
                                     1 - at::min(tw / (pw + eps), pw / (tw + eps)),
                                     1 - at::min(th / (ph + eps), ph / (th + eps))},
                                    1);
  return at::where(cost < beta, 0.5 * cost.square() / beta, cost - 0.5 * beta);
}

at::Tensor GIoULoss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  return giou_loss(pred, target);
}

IoULoss::IoULoss(IoULossMode mode, double eps, double loss_weight)
    : Loss(loss_weight), mode_(mode), eps_(eps) {
  TORCH_CHECK(eps > 0, "IoULoss: eps must be > 0, got ", eps);
}

at::Tensor IoULoss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  return iou_loss(pred, target, mode_, eps_);
}

BoundedIoULoss::BoundedIoULoss(double beta, double eps, double loss_weight)
    : Loss(loss_weight), beta_(beta), eps_(eps) {
  TORCH_CHECK(beta > 0, "BoundedIoULoss: beta must be > 0, got ", beta);
  TORCH_CHECK(eps > 0, "BoundedIoULoss: eps must be > 0, got ", eps);
}

at::Tensor BoundedIoULoss::elementwise(const at::Tensor& pred, const at::Tensor& target) const {
  return bounded_iou_loss(pred, target, beta_, eps_);
}

SETDET_REGISTER(LossRegistry, "GIoULoss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "loss_weight"});
  return std::make_shared<GIoULoss>(read_loss_weight(cfg));
});

SETDET_REGISTER(LossRegistry, "IoULoss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "mode", "linear", "eps", "loss_weight"});
  const auto name = cfg.get<std::string>("mode", cfg.get<bool>("linear", false) ? "linear" : "log");
  SETDET_CHECK(name == "linear" || name == "square" || name == "log", cfg.where(),
               ".mode: expected linear, square or log, got '", name, "'");
  SETDET_CHECK(!(cfg.get<bool>("linear", false) && name != "linear"), cfg.where(),
               ": linear: true contradicts mode '", name, "'");
  const IoULossMode mode = name == "linear"   ? IoULossMode::kLinear
                           : name == "square" ? IoULossMode::kSquare
                                              : IoULossMode::kLog;
  const auto eps = cfg.get<double>("eps", 1e-6);
  SETDET_CHECK(eps > 0, cfg.where(), ".eps: expected > 0, got ", eps);
  return std::make_shared<IoULoss>(mode, eps, read_loss_weight(cfg));
});

SETDET_REGISTER(LossRegistry, "BoundedIoULoss", [](const Config& cfg) -> std::shared_ptr<Loss> {
  cfg.check_keys({"type", "beta", "eps", "loss_weight"});
  const auto beta = cfg.get<double>("beta", 0.2);
  const auto eps = cfg.get<double>("eps", 1e-3);
  SETDET_CHECK(beta > 0, cfg.where(), ".beta: expected > 0, got ", beta);
  SETDET_CHECK(eps > 0, cfg.where(), ".eps: expected > 0, got ", eps);
  return std::make_shared<BoundedIoULoss>(beta, eps, read_loss_weight(cfg));
});

}  // namespace setdet
