"""torch.ops.setdet.soft_nms and matrix_nms: consistency with NMS, with slow reference
implementations of their definitions (mmcv.ops.soft_nms; PaddlePaddle's matrix_nms), and
hand-computed cases. The C++ goldens against mmcv / Paddle live in the dedup tests."""
import math
import unittest

import torch
import torchvision

from setdet_testing import (BOX_DISTRIBUTIONS, load_ops, make_boxes, make_labels, make_scores)

ops = load_ops()


def soft_nms_reference(boxes, scores, iou_threshold, sigma, min_score, method):
    """mmcv's soft-NMS loop in Python floats (float64), ties to the lowest index, boxes below
    min_score never emitted."""
    b = boxes.tolist()
    cur = [float(s) for s in scores]
    live = [i for i in range(len(b)) if cur[i] >= min_score]
    area = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in b]
    keep, kept_scores = [], []
    while live:
        best = live[0]
        for i in live[1:]:
            if cur[i] > cur[best]:
                best = i
        keep.append(best)
        kept_scores.append(cur[best])
        bx1, by1, bx2, by2 = b[best]
        survivors = []
        for i in live:
            if i == best:
                continue
            x1, y1, x2, y2 = b[i]
            inter = max(0.0, min(bx2, x2) - max(bx1, x1)) * max(0.0, min(by2, y2) - max(by1, y1))
            iou = inter / (area[best] + area[i] - inter) if inter > 0 else 0.0
            if method == "naive":
                if iou >= iou_threshold:
                    cur[i] = 0.0
            elif method == "linear":
                if iou >= iou_threshold:
                    cur[i] *= 1.0 - iou
            else:
                cur[i] *= math.exp(-(iou * iou) / sigma)
            if cur[i] >= min_score:
                survivors.append(i)
        live = survivors
    return keep, kept_scores


def matrix_nms_reference(boxes, scores, labels, kernel, sigma):
    """Paddle's box matrix NMS (normalized IoU, thresholds 0, no top-k) in float64 tensors."""
    entries = []
    for c in sorted(set(labels.tolist())):
        idx = [i for i in range(len(scores)) if int(labels[i]) == c and float(scores[i]) > 0]
        idx.sort(key=lambda i: (-float(scores[i]), i))
        if not idx:
            continue
        b = boxes[idx].to(torch.float64)
        iou = torchvision.ops.box_iou(b, b).triu(1)  # iou[i, j] for i < j
        cmax = iou.max(dim=0).values  # cmax[i] = max_{k < i} iou[k, i]
        if kernel == "gaussian":
            ratio = torch.exp((cmax[:, None] ** 2 - iou ** 2) * sigma)
        else:
            ratio = (1 - iou) / (1 - cmax[:, None])
        k = len(idx)
        below = torch.ones((k, k), dtype=torch.bool).triu(1)
        ratio = torch.where(below, ratio, torch.full_like(ratio, math.inf))
        decay = ratio.min(dim=0).values.clamp(max=1.0)
        for j, i in enumerate(idx):
            entries.append((i, float(decay[j]) * float(scores[i])))
    entries.sort(key=lambda e: -e[1])  # stable: classes ascending, then score order
    return [e[0] for e in entries], [e[1] for e in entries]


class SoftNmsTest(unittest.TestCase):
    def test_naive_equals_nms_for_random_boxes(self):
        # naive: suppress when IoU >= thr; nms: when IoU > thr. Random boxes have no IoU exactly
        # equal to thr, so with a min_score below every score the keep lists are identical and
        # kept boxes keep their input scores.
        for dist in BOX_DISTRIBUTIONS:
            for n in (1, 2, 10, 200, 1000):
                for dtype in (torch.float32, torch.float64):
                    for thr in (0.3, 0.5, 0.7):
                        with self.subTest(dist=dist, n=n, dtype=dtype, thr=thr):
                            boxes = make_boxes(dist, n, 1).to(dtype)
                            scores = (0.01 + 0.99 * make_scores(n, 1)).to(dtype)
                            keep, kept = ops.soft_nms(boxes, scores, thr, 0.5, 1e-6, "naive")
                            self.assertEqual(keep.tolist(), ops.nms(boxes, scores, thr).tolist())
                            self.assertEqual(kept.tolist(), scores[keep].tolist())
                            self.assertEqual(kept.dtype, dtype)

    def test_naive_suppresses_at_equal_iou_where_nms_keeps(self):
        # IoU exactly 0.5 (intersection 2, union 4): naive (>=) suppresses, nms (>) keeps.
        boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]], dtype=torch.float64)
        scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
        keep, _ = ops.soft_nms(boxes, scores, 0.5, 0.5, 1e-6, "naive")
        self.assertEqual(keep.tolist(), [0])
        self.assertEqual(ops.nms(boxes, scores, 0.5).tolist(), [0, 1])
        keep, kept = ops.soft_nms(boxes, scores, 0.5, 0.5, 1e-6, "linear")
        self.assertEqual(keep.tolist(), [0, 1])
        self.assertEqual(kept.tolist(), [0.9, 0.8 * 0.5])

    def test_matches_reference(self):
        for method in ("linear", "gaussian", "naive"):
            for dist in BOX_DISTRIBUTIONS:
                for n in (0, 1, 3, 50, 300):
                    for seed in range(2):
                        for thr, sigma, min_score in ((0.3, 0.5, 1e-3), (0.6, 0.1, 0.05),
                                                      (0.0, 2.0, 0.0)):
                            with self.subTest(method=method, dist=dist, n=n, seed=seed, thr=thr):
                                boxes = make_boxes(dist, n, seed)
                                scores = make_scores(n, seed, ties=seed == 1)
                                keep, kept = ops.soft_nms(boxes, scores, thr, sigma, min_score,
                                                          method)
                                ref_keep, ref_kept = soft_nms_reference(boxes, scores, thr, sigma,
                                                                        min_score, method)
                                self.assertEqual(keep.tolist(), ref_keep)
                                torch.testing.assert_close(
                                    kept, torch.tensor(ref_kept, dtype=torch.float64),
                                    rtol=1e-12, atol=1e-15)

    def test_float32_matches_float64_reference(self):
        for method in ("linear", "gaussian"):
            boxes = make_boxes("clustered", 200, 9)
            scores = make_scores(200, 9)
            keep, kept = ops.soft_nms(boxes.float(), scores.float(), 0.3, 0.5, 1e-3, method)
            ref_keep, ref_kept = soft_nms_reference(boxes.float().double(), scores.float().double(),
                                                    0.3, 0.5, 1e-3, method)
            self.assertEqual(keep.tolist(), ref_keep)
            torch.testing.assert_close(kept, torch.tensor(ref_kept, dtype=torch.float32),
                                       rtol=1e-4, atol=1e-6)

    def test_decayed_scores_never_increase_and_respect_min_score(self):
        boxes = make_boxes("crowded", 500, 3)
        scores = make_scores(500, 3)
        for method in ("linear", "gaussian"):
            keep, kept = ops.soft_nms(boxes, scores, 0.3, 0.5, 0.01, method)
            self.assertTrue(bool((kept <= scores[keep]).all()))
            self.assertTrue(bool((kept >= 0.01).all()))
            self.assertEqual(len(set(keep.tolist())), keep.numel())

    def test_box_below_min_score_is_never_emitted(self):
        boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        keep, kept = ops.soft_nms(boxes, torch.tensor([0.0005]), 0.3, 0.5, 1e-3, "linear")
        self.assertEqual(keep.numel(), 0)
        self.assertEqual(kept.numel(), 0)

    def test_empty(self):
        keep, kept = ops.soft_nms(torch.zeros((0, 4), dtype=torch.float64),
                                  torch.zeros((0,), dtype=torch.float64), 0.3, 0.5, 1e-3, "linear")
        self.assertEqual((keep.shape, keep.dtype), ((0,), torch.int64))
        self.assertEqual((kept.shape, kept.dtype), ((0,), torch.float64))


class MatrixNmsTest(unittest.TestCase):
    def test_matches_reference(self):
        for kernel, sigma in (("gaussian", 2.0), ("gaussian", 0.5), ("linear", 2.0)):
            for dist in ("uniform", "clustered"):
                for n in (1, 2, 30, 400):
                    for classes in (1, 4):
                        with self.subTest(kernel=kernel, sigma=sigma, dist=dist, n=n,
                                          classes=classes):
                            boxes = make_boxes(dist, n, n)
                            scores = make_scores(n, n)
                            labels = make_labels(n, n, classes)
                            keep, kept = ops.matrix_nms(boxes, scores, labels if classes > 1
                                                        else None, kernel, sigma)
                            ref_keep, ref_kept = matrix_nms_reference(boxes, scores, labels if
                                                                      classes > 1 else
                                                                      torch.zeros(n), kernel,
                                                                      sigma)
                            self.assertEqual(keep.tolist(), ref_keep)
                            torch.testing.assert_close(
                                kept, torch.tensor(ref_kept, dtype=torch.float64), rtol=1e-9,
                                atol=1e-12)

    def test_first_box_of_each_class_is_not_decayed(self):
        boxes = make_boxes("crowded", 100, 2)
        scores = make_scores(100, 2)
        labels = make_labels(100, 2, 3)
        keep, kept = ops.matrix_nms(boxes, scores, labels)
        for c in range(3):
            top = max((i for i in range(100) if int(labels[i]) == c), key=lambda i: scores[i])
            self.assertIn(top, keep.tolist())
            self.assertEqual(float(kept[keep.tolist().index(top)]), float(scores[top]))
        self.assertTrue(bool((kept <= scores[keep]).all()))

    def test_hand_computed_gaussian_decay(self):
        # IoU 1/3 (intersection 1, union 3): decay exp(-sigma * (1/3)^2) with sigma 2.
        boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
        scores = torch.tensor([0.9, 0.6], dtype=torch.float64)
        keep, kept = ops.matrix_nms(boxes, scores)
        self.assertEqual(keep.tolist(), [0, 1])
        torch.testing.assert_close(kept, torch.tensor([0.9, 0.6 * math.exp(-2.0 / 9.0)],
                                                      dtype=torch.float64))
        keep, kept = ops.matrix_nms(boxes, scores, None, "linear")
        torch.testing.assert_close(kept, torch.tensor([0.9, 0.6 * (2.0 / 3.0)],
                                                      dtype=torch.float64))

    def test_pixel_convention_adds_one_to_widths(self):
        # Touching boxes: IoU 0 when normalized; with widths x2 - x1 + 1 the overlap is 1 x 2 of
        # two 2 x 2 boxes, IoU 2 / 6.
        boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0]], dtype=torch.float64)
        scores = torch.tensor([0.9, 0.6], dtype=torch.float64)
        _, kept = ops.matrix_nms(boxes, scores)
        self.assertEqual(kept.tolist(), [0.9, 0.6])
        _, kept = ops.matrix_nms(boxes, scores, normalized=False)
        torch.testing.assert_close(kept, torch.tensor([0.9, 0.6 * math.exp(-2.0 / 9.0)],
                                                      dtype=torch.float64))

    def test_thresholds_and_top_k(self):
        boxes = make_boxes("clustered", 300, 4)
        scores = make_scores(300, 4)
        labels = make_labels(300, 4, 2)
        keep_all, kept_all = ops.matrix_nms(boxes, scores, labels)
        keep, kept = ops.matrix_nms(boxes, scores, labels, keep_top_k=10)
        self.assertEqual(keep.tolist(), keep_all[:10].tolist())
        keep, kept = ops.matrix_nms(boxes, scores, labels, post_threshold=0.3)
        self.assertEqual(keep.tolist(), keep_all[kept_all > 0.3].tolist())
        keep, kept = ops.matrix_nms(boxes, scores, labels, score_threshold=0.5)
        self.assertTrue(bool((scores[keep] > 0.5).all()))
        keep, _ = ops.matrix_nms(boxes, scores, labels, pre_top_k=5)
        self.assertLessEqual(keep.numel(), 10)

    def test_float32(self):
        boxes = make_boxes("clustered", 200, 8)
        scores = make_scores(200, 8)
        keep, kept = ops.matrix_nms(boxes.float(), scores.float())
        ref_keep, ref_kept = matrix_nms_reference(boxes.float().double(),
                                                  scores.float().double(), torch.zeros(200),
                                                  "gaussian", 2.0)
        self.assertEqual(kept.dtype, torch.float32)
        self.assertEqual(keep.tolist(), ref_keep)
        torch.testing.assert_close(kept, torch.tensor(ref_kept, dtype=torch.float32), rtol=1e-4,
                                   atol=1e-6)

    def test_empty(self):
        keep, kept = ops.matrix_nms(torch.zeros((0, 4)), torch.zeros((0,)))
        self.assertEqual((keep.shape, keep.dtype), ((0,), torch.int64))
        self.assertEqual((kept.shape, kept.dtype), ((0,), torch.float32))


if __name__ == "__main__":
    unittest.main()
