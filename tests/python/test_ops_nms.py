"""Parity of torch.ops.setdet.nms / batched_nms with torchvision 0.14 (torchvision.ops)."""
import unittest

import torch
import torchvision
from torchvision.ops import boxes as tv_boxes

from setdet_testing import (BOX_DISTRIBUTIONS, load_ops, make_boxes, make_labels, make_scores,
                            stable_score_order)

ops = load_ops()

SIZES = (0, 1, 2, 5, 17, 100, 1000, 3000)
LARGE = 10000
DTYPES = (torch.float32, torch.float64)
THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 1.0)


class NmsParityTest(unittest.TestCase):
    def check_nms(self, boxes, scores, thr):
        expected = torchvision.ops.nms(boxes, scores, thr)
        got = ops.nms(boxes, scores, thr)
        self.assertEqual(got.dtype, torch.int64)
        # Both sort stably (equal scores keep input order), so even with ties the lists match.
        self.assertEqual(got.tolist(), expected.tolist(),
                         f"n={boxes.shape[0]} dtype={boxes.dtype} thr={thr}")

    def test_matches_torchvision(self):
        for dist in BOX_DISTRIBUTIONS:
            for n in SIZES:
                for seed in range(3):
                    for dtype in DTYPES:
                        for ties in (False, True):
                            boxes = make_boxes(dist, n, seed).to(dtype)
                            scores = make_scores(n, seed, ties).to(dtype)
                            for thr in THRESHOLDS if n <= 100 else (0.5,):
                                with self.subTest(dist=dist, n=n, seed=seed, dtype=dtype,
                                                  ties=ties, thr=thr):
                                    self.check_nms(boxes, scores, thr)

    def test_matches_torchvision_10k(self):
        for dist in BOX_DISTRIBUTIONS:
            for dtype in DTYPES:
                with self.subTest(dist=dist, dtype=dtype):
                    boxes = make_boxes(dist, LARGE, 11).to(dtype)
                    scores = make_scores(LARGE, 11, ties=dtype == torch.float64).to(dtype)
                    self.check_nms(boxes, scores, 0.5)

    def test_identical_boxes_keep_first_of_equal_scores(self):
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4)
        scores = torch.tensor([0.5, 0.9, 0.9, 0.1])
        self.assertEqual(ops.nms(boxes, scores, 0.5).tolist(), [1])
        self.assertEqual(ops.nms(boxes, scores, 1.0).tolist(), [1, 2, 0, 3])

    def test_threshold_is_strict(self):
        # IoU of these two boxes is exactly 0.5 (intersection 2, union 4): kept at 0.5.
        boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]], dtype=torch.float64)
        scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
        self.assertEqual(ops.nms(boxes, scores, 0.5).tolist(), [0, 1])
        self.assertEqual(ops.nms(boxes, scores, 0.4999).tolist(), [0])
        self.assertEqual(torchvision.ops.nms(boxes, scores, 0.5).tolist(), [0, 1])

    def test_zero_area_boxes_never_suppress(self):
        boxes = torch.tensor([[5.0, 5.0, 5.0, 9.0], [5.0, 5.0, 5.0, 9.0], [0.0, 0.0, 10.0, 10.0]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        self.assertEqual(ops.nms(boxes, scores, 0.0).tolist(), [0, 1, 2])

    def test_empty_returns_empty_int64(self):
        for dtype in DTYPES:
            keep = ops.nms(torch.zeros((0, 4), dtype=dtype), torch.zeros((0,), dtype=dtype), 0.5)
            self.assertEqual(keep.shape, (0,))
            self.assertEqual(keep.dtype, torch.int64)

    def test_non_contiguous_inputs(self):
        base = make_boxes("clustered", 500, 3)
        boxes = base.t().contiguous().t()  # column-major view, same values
        self.assertFalse(boxes.is_contiguous())
        scores = make_scores(1000, 3)[::2]
        self.assertFalse(scores.is_contiguous())
        self.assertEqual(ops.nms(boxes, scores, 0.5).tolist(),
                         torchvision.ops.nms(base, scores.contiguous(), 0.5).tolist())

    def test_same_result_with_one_thread(self):
        boxes = make_boxes("clustered", 5000, 5)
        scores = make_scores(5000, 5)
        before = ops.num_threads()
        try:
            ops.set_num_threads(1)
            one = ops.nms(boxes, scores, 0.5)
            ops.set_num_threads(4)
            four = ops.nms(boxes, scores, 0.5)
        finally:
            ops.set_num_threads(0)
        self.assertEqual(ops.num_threads(), before)
        self.assertEqual(one.tolist(), four.tolist())


class BatchedNmsParityTest(unittest.TestCase):
    def check_batched(self, boxes, scores, idxs, thr):
        got = ops.batched_nms(boxes, scores, idxs, thr)
        self.assertEqual(got.dtype, torch.int64)
        # torchvision's own definition (per-class nms); its final sort by score is not stable,
        # so with tied scores the order of tied entries may differ: compare sets and score order.
        vanilla = tv_boxes._batched_nms_vanilla(boxes, scores, idxs, thr)
        public = torchvision.ops.batched_nms(boxes, scores, idxs, thr)
        self.assertEqual(sorted(got.tolist()), sorted(vanilla.tolist()))
        self.assertEqual(got.tolist(), stable_score_order(got, scores))
        if boxes.dtype == torch.float64:
            # The coordinate-offset path torchvision takes for small N loses float32 precision.
            self.assertEqual(sorted(got.tolist()), sorted(public.tolist()))
            self.assertEqual(scores[got].tolist(), scores[public].tolist())

    def test_matches_torchvision(self):
        for dist in BOX_DISTRIBUTIONS:
            for n in SIZES:
                for seed in range(2):
                    for dtype in DTYPES:
                        for ties in (False, True):
                            for classes in (1, 3, 80):
                                with self.subTest(dist=dist, n=n, seed=seed, dtype=dtype,
                                                  ties=ties, classes=classes):
                                    boxes = make_boxes(dist, n, seed).to(dtype)
                                    scores = make_scores(n, seed, ties).to(dtype)
                                    idxs = make_labels(n, seed, classes)
                                    self.check_batched(boxes, scores, idxs, 0.5)

    def test_matches_torchvision_10k_80_classes(self):
        for dtype in DTYPES:
            with self.subTest(dtype=dtype):
                boxes = make_boxes("clustered", LARGE, 21).to(dtype)
                scores = make_scores(LARGE, 21).to(dtype)
                idxs = make_labels(LARGE, 21, 80)
                self.check_batched(boxes, scores, idxs, 0.5)

    def test_other_integer_idxs_dtypes(self):
        boxes = make_boxes("crowded", 200, 4)
        scores = make_scores(200, 4)
        idxs = make_labels(200, 4, 5)
        expected = ops.batched_nms(boxes, scores, idxs, 0.6).tolist()
        for dtype in (torch.int32, torch.int16, torch.uint8):
            self.assertEqual(ops.batched_nms(boxes, scores, idxs.to(dtype), 0.6).tolist(), expected)

    def test_classes_do_not_suppress_each_other(self):
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
        scores = torch.tensor([0.3, 0.9, 0.6])
        idxs = torch.tensor([0, 1, 0])
        self.assertEqual(ops.batched_nms(boxes, scores, idxs, 0.5).tolist(), [1, 2])

    def test_empty_returns_empty_int64(self):
        keep = ops.batched_nms(torch.zeros((0, 4)), torch.zeros((0,)),
                               torch.zeros((0,), dtype=torch.int64), 0.5)
        self.assertEqual(keep.shape, (0,))
        self.assertEqual(keep.dtype, torch.int64)


if __name__ == "__main__":
    unittest.main()
