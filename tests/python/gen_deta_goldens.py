"""Writes tests/data/deta/hungarian_goldens.txt for tests/lib/test_deta_assign.cpp.

Deformable DETR's HungarianMatcher cost (focal class cost with alpha 0.25, gamma 2, + L1 on
(cx, cy, w, h) + -GIoU, weights class 2 / bbox 5 / giou 2), written here from its definition with
torch ops, on random predictions and GT; the expected assignment is scipy 1.10.1's
linear_sum_assignment of that cost (float32, as the reference passes it). Run with Debian's
/usr/bin/python3 (torch 1.13, scipy 1.10.1):
    /usr/bin/python3 tests/python/gen_deta_goldens.py
"""
import os

import scipy
import torch
from scipy.optimize import linear_sum_assignment

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "deta", "hungarian_goldens.txt")


def xyxy(b):
    c, wh = b[:, :2], b[:, 2:]
    return torch.cat([c - 0.5 * wh, c + 0.5 * wh], 1)


def giou(a, b):
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None] - inter
    iou = inter / union
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull


def cost(logits, boxes, labels, gt):
    p = logits.sigmoid()
    alpha, gamma = 0.25, 2.0
    neg = (1 - alpha) * (p ** gamma) * (-(1 - p + 1e-8).log())
    pos = alpha * ((1 - p) ** gamma) * (-(p + 1e-8).log())
    c_cls = pos[:, labels] - neg[:, labels]
    c_box = torch.cdist(boxes, gt, p=1)
    c_giou = -giou(xyxy(boxes), xyxy(gt))
    return 5 * c_box + 2 * c_cls + 2 * c_giou


def random_boxes(g, n):
    c = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    wh = torch.rand(n, 2, generator=g) * 0.3 + 0.02
    return torch.cat([c, wh], 1)


def main():
    g = torch.Generator().manual_seed(12)
    cases = []
    for q, c, m in [(10, 3, 4), (30, 5, 7), (7, 2, 7), (50, 8, 12), (5, 4, 9)]:
        logits = torch.randn(q, c, generator=g) * 2
        boxes = random_boxes(g, q)
        labels = torch.randint(0, c, (m,), generator=g)
        gt = random_boxes(g, m)
        cm = cost(logits, boxes, labels, gt)
        rows, cols = linear_sum_assignment(cm.numpy())
        cases.append((q, c, m, logits, boxes, labels, gt, cm, rows, cols))
    # plain text: a '#' header line, then per case "Q C M" and the tensors row-major, one per line
    lines = [f"# tests/python/gen_deta_goldens.py, torch {torch.__version__}, "
             f"scipy {scipy.__version__}", str(len(cases))]
    for q, c, m, logits, boxes, labels, gt, cm, rows, cols in cases:
        lines.append(f"{q} {c} {m}")
        for t in (logits, boxes, labels, gt, cm):
            lines.append(" ".join(repr(float(v)) for v in t.reshape(-1).tolist()))
        lines.append(" ".join(str(int(v)) for v in rows))
        lines.append(" ".join(str(int(v)) for v in cols))
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
