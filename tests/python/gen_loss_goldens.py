"""Prints golden values for the regression losses in tests/lib/test_losses.cpp.

torch 1.13 in float64: torch.nn.functional.l1_loss / smooth_l1_loss for L1Loss / SmoothL1Loss, and
for the others the reference formulas written out below from their papers and MMDetection's
definitions (mmdet 2.x / 3.x losses: balanced_l1_loss.py, iou_loss.py).

Run: /usr/bin/python3 tests/python/gen_loss_goldens.py
"""
import math

import torch
import torch.nn.functional as F

DTYPE = torch.float64
PRED = torch.tensor([[0.1, -0.5, 1.3, 2.0], [0.0, 0.9, -1.2, 0.05], [3.0, -2.5, 0.4, -0.02]],
                    dtype=DTYPE)
TARGET = torch.tensor([[0.0, 0.2, -0.1, 2.5], [0.0, 1.0, 0.3, -0.05], [0.5, 0.5, 0.45, 0.0]],
                      dtype=DTYPE)
BOXES_A = torch.tensor([[0, 0, 10, 10], [5, 5, 15, 20], [2, 3, 4, 9], [1, 1, 7, 5]], dtype=DTYPE)
BOXES_B = torch.tensor([[1, 1, 11, 9], [20, 20, 30, 30], [0, 0, 3, 3.5], [2, 2, 4, 4]],
                       dtype=DTYPE)


def balanced_l1(pred, target, alpha=0.5, gamma=1.5, beta=1.0):
    # Libra R-CNN Eq. (8)-(9) with the inner point scaled to beta (MMDetection).
    d = (pred - target).abs()
    b = math.exp(gamma / alpha) - 1
    inner = alpha / b * (b * d + 1) * torch.log(b * d / beta + 1) - alpha * d
    return torch.where(d < beta, inner, gamma * d + gamma / b - alpha * beta)


def aligned_iou(a, b, eps=1e-6):
    w = (torch.min(a[:, 2], b[:, 2]) - torch.max(a[:, 0], b[:, 0])).clamp(min=0)
    h = (torch.min(a[:, 3], b[:, 3]) - torch.max(a[:, 1], b[:, 1])).clamp(min=0)
    inter = w * h
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / torch.max(union - inter, torch.tensor(eps, dtype=a.dtype))


def bounded_iou(pred, target, beta=0.2, eps=1e-3):
    # Tychsen-Smith & Petersson 2018, Eq. (7)-(9), smooth-L1'd costs as MMDetection.
    pw, ph = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    tw, th = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    dx = ((target[:, 0] + target[:, 2]) / 2 - (pred[:, 0] + pred[:, 2]) / 2).abs()
    dy = ((target[:, 1] + target[:, 3]) / 2 - (pred[:, 1] + pred[:, 3]) / 2).abs()
    cost = torch.stack([
        1 - torch.clamp((tw - 2 * dx) / (tw + 2 * dx + eps), min=0),
        1 - torch.clamp((th - 2 * dy) / (th + 2 * dy + eps), min=0),
        1 - torch.min(tw / (pw + eps), pw / (tw + eps)),
        1 - torch.min(th / (ph + eps), ph / (th + eps))], 1)
    return torch.where(cost < beta, 0.5 * cost * cost / beta, cost - 0.5 * beta)


def show(name, t):
    values = ", ".join(f"{v:.17g}" for v in t.flatten().tolist())
    print(f"{name}: {{{values}}}")


def main():
    show("l1", F.l1_loss(PRED, TARGET, reduction="none"))
    show("smooth_l1 beta 1", F.smooth_l1_loss(PRED, TARGET, reduction="none", beta=1.0))
    show("smooth_l1 beta 0.11", F.smooth_l1_loss(PRED, TARGET, reduction="none", beta=0.11))
    show("balanced_l1 0.5 1.5 1", balanced_l1(PRED, TARGET))
    show("balanced_l1 0.5 1.5 0.5", balanced_l1(PRED, TARGET, beta=0.5))
    p = PRED.clone().requires_grad_(True)
    balanced_l1(p, TARGET).sum().backward()
    show("balanced_l1 grad", p.grad)
    iou = aligned_iou(BOXES_A, BOXES_B).clamp(min=1e-6)
    show("iou linear", 1 - iou)
    show("iou square", 1 - iou ** 2)
    show("iou log", -iou.log())
    show("bounded_iou", bounded_iou(BOXES_A, BOXES_B))
    p = BOXES_A.clone().requires_grad_(True)
    bounded_iou(p, BOXES_B).sum().backward()
    show("bounded_iou grad", p.grad)


if __name__ == "__main__":
    main()
