"""Parity of torch.ops.setdet.{box_iou, generalized_box_iou, distance_box_iou} with
torchvision 0.14."""
import unittest

import torch
import torchvision

from setdet_testing import BOX_DISTRIBUTIONS, load_ops, make_boxes

ops = load_ops()

PAIRS = ((0, 0), (0, 5), (5, 0), (1, 1), (3, 7), (64, 33), (500, 300))
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}
FUNCTIONS = (
    ("box_iou", torchvision.ops.box_iou),
    ("generalized_box_iou", torchvision.ops.generalized_box_iou),
    ("distance_box_iou", torchvision.ops.distance_box_iou),
)


class PairwiseIouParityTest(unittest.TestCase):
    def test_matches_torchvision(self):
        for name, reference in FUNCTIONS:
            op = getattr(ops, name)
            for dist in BOX_DISTRIBUTIONS:
                for n, m in PAIRS:
                    for seed in range(2):
                        for dtype in (torch.float32, torch.float64):
                            with self.subTest(op=name, dist=dist, n=n, m=m, seed=seed,
                                              dtype=dtype):
                                a = make_boxes(dist, n, seed).to(dtype)
                                b = make_boxes(dist, m, seed + 100).to(dtype)
                                got = op(a, b)
                                self.assertEqual(got.dtype, dtype)
                                self.assertEqual(tuple(got.shape), (n, m))
                                torch.testing.assert_close(got, reference(a, b),
                                                           **TOLERANCE[dtype])

    def test_matches_torchvision_large(self):
        for name, reference in FUNCTIONS:
            for dtype in (torch.float32, torch.float64):
                with self.subTest(op=name, dtype=dtype):
                    a = make_boxes("clustered", 3000, 5).to(dtype)
                    b = make_boxes("clustered", 1000, 6).to(dtype)
                    torch.testing.assert_close(getattr(ops, name)(a, b), reference(a, b),
                                               **TOLERANCE[dtype])

    def test_self_iou_is_one_on_diagonal(self):
        boxes = make_boxes("clustered", 300, 1)
        iou = ops.box_iou(boxes, boxes)
        torch.testing.assert_close(iou.diagonal(), torch.ones(300, dtype=torch.float64))
        torch.testing.assert_close(iou, iou.t())

    def test_hand_computed_values(self):
        a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 6.0, 2.0]])
        # intersection 1, union 7; enclosing boxes 3x3 and 6x2
        torch.testing.assert_close(ops.box_iou(a, b), torch.tensor([[1.0 / 7.0, 0.0]]))
        torch.testing.assert_close(ops.generalized_box_iou(a, b),
                                   torch.tensor([[1.0 / 7.0 - 2.0 / 9.0, 0.0 - 4.0 / 12.0]]))
        # centre distances^2: 2 and 16; enclosing diagonals^2: 18 and 40
        torch.testing.assert_close(ops.distance_box_iou(a, b),
                                   torch.tensor([[1.0 / 7.0 - 2.0 / 18.0, -16.0 / 40.0]]))

    def test_zero_area_boxes_give_zero_not_nan(self):
        a = torch.tensor([[1.0, 1.0, 1.0, 5.0], [2.0, 2.0, 2.0, 2.0]])
        iou = ops.box_iou(a, a)
        self.assertFalse(torch.isnan(iou).any())
        self.assertEqual(iou.tolist(), [[0.0, 0.0], [0.0, 0.0]])

    def test_empty_keeps_shape_and_dtype(self):
        for dtype in (torch.float32, torch.float64):
            out = ops.box_iou(torch.zeros((0, 4), dtype=dtype), torch.zeros((3, 4), dtype=dtype))
            self.assertEqual(tuple(out.shape), (0, 3))
            self.assertEqual(out.dtype, dtype)

    def test_non_contiguous_inputs(self):
        a = make_boxes("uniform", 40, 2)
        b = make_boxes("uniform", 80, 3)[::2]
        self.assertFalse(b.is_contiguous())
        torch.testing.assert_close(ops.box_iou(a, b), torchvision.ops.box_iou(a, b.contiguous()))

    def test_not_differentiable(self):
        a = make_boxes("uniform", 4, 2).requires_grad_()
        iou = ops.box_iou(a, a)
        with self.assertRaisesRegex(RuntimeError, "not implemented"):
            iou.sum().backward()


if __name__ == "__main__":
    unittest.main()
