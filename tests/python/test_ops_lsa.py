"""Parity of torch.ops.setdet.linear_sum_assignment with scipy.optimize.linear_sum_assignment."""
import unittest

import numpy as np
import scipy.optimize
import torch

from setdet_testing import load_ops

ops = load_ops()

SHAPES = ((1, 1), (1, 5), (5, 1), (2, 3), (3, 2), (10, 10), (17, 40), (40, 17), (100, 100),
          (300, 100), (100, 300), (250, 250))


def random_cost(n, m, seed, kind):
    g = torch.Generator()
    g.manual_seed(seed)
    if kind == "uniform":
        return torch.rand((n, m), generator=g, dtype=torch.float64)
    if kind == "integer":  # many equal entries: optimal assignments are not unique
        return torch.randint(0, 5, (n, m), generator=g).to(torch.float64)
    if kind == "negative":
        return torch.randn((n, m), generator=g, dtype=torch.float64) * 1e3
    raise ValueError(kind)


class LinearSumAssignmentParityTest(unittest.TestCase):
    def check(self, cost):
        rows, cols = ops.linear_sum_assignment(cost)
        n, m = cost.shape
        k = min(n, m)
        self.assertEqual(rows.dtype, torch.int64)
        self.assertEqual(cols.dtype, torch.int64)
        self.assertEqual(rows.shape, (k,))
        self.assertEqual(cols.shape, (k,))
        r, c = rows.tolist(), cols.tolist()
        self.assertEqual(r, sorted(set(r)), "rows must be distinct and ascending")
        self.assertEqual(len(set(c)), k, "columns must be distinct")
        self.assertTrue(all(0 <= i < n for i in r) and all(0 <= j < m for j in c))
        c64 = cost.to(torch.float64).numpy()
        sr, sc = scipy.optimize.linear_sum_assignment(c64)
        expected_total = c64[sr, sc].sum()
        total = c64[np.array(r, dtype=np.int64), np.array(c, dtype=np.int64)].sum()
        tol = 1e-9 * max(1.0, abs(expected_total)) if cost.dtype == torch.float64 else \
            1e-4 * max(1.0, abs(expected_total))
        self.assertLessEqual(abs(total - expected_total), tol, f"shape {tuple(cost.shape)}")
        return r, c, sr.tolist(), sc.tolist()

    def test_same_optimum_as_scipy(self):
        for n, m in SHAPES:
            for kind in ("uniform", "integer", "negative"):
                for seed in range(4):
                    for dtype in (torch.float32, torch.float64):
                        with self.subTest(n=n, m=m, kind=kind, seed=seed, dtype=dtype):
                            r, c, sr, sc = self.check(random_cost(n, m, seed, kind).to(dtype))
                            if kind != "integer" and dtype == torch.float64:
                                # continuous costs: the optimum is unique, so the pairs match
                                self.assertEqual((r, c), (sr, sc))

    def test_large_rectangular(self):
        for n, m in ((900, 300), (300, 900)):
            with self.subTest(n=n, m=m):
                r, c, sr, sc = self.check(random_cost(n, m, 7, "uniform"))
                self.assertEqual((r, c), (sr, sc))

    def test_constant_cost_gives_a_full_matching(self):
        for n, m in ((4, 4), (3, 6), (6, 3)):
            with self.subTest(n=n, m=m):
                self.check(torch.ones((n, m)))

    def test_hand_computed(self):
        cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
        rows, cols = ops.linear_sum_assignment(cost)
        self.assertEqual(rows.tolist(), [0, 1, 2])
        self.assertEqual(cols.tolist(), [1, 0, 2])  # total 1 + 2 + 2 = 5

    def test_non_contiguous_cost(self):
        cost = random_cost(30, 20, 3, "uniform")
        rows, cols = ops.linear_sum_assignment(cost.t())
        sr, sc = scipy.optimize.linear_sum_assignment(cost.t().numpy())
        self.assertEqual((rows.tolist(), cols.tolist()), (sr.tolist(), sc.tolist()))

    def test_empty(self):
        for shape in ((0, 0), (0, 4), (4, 0)):
            rows, cols = ops.linear_sum_assignment(torch.zeros(shape))
            self.assertEqual(rows.shape, (0,))
            self.assertEqual(cols.shape, (0,))
            self.assertEqual(rows.dtype, torch.int64)


if __name__ == "__main__":
    unittest.main()
