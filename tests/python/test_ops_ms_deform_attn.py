"""torch.ops.setdet.ms_deform_attn against the composite it is defined by: Deformable-DETR's
ms_deform_attn_core_pytorch (one F.grid_sample per level, bilinear, zeros padding,
align_corners=False, at 2 * loc - 1; setdet_testing.ms_deform_attn_composite). Forward and all
three gradients on many seeded cases (points inside, outside and exactly on the borders of the
maps, odd level sizes, several N / M / D / L / P), gradcheck in float64, bfloat16 / autocast,
thread counts, empty input and the error messages."""
import re
import unittest

import torch

from setdet_testing import level_start_index, load_ops, ms_deform_attn_composite

ops = load_ops()


def make_case(seed, n, m, d, sizes, lq, p, dtype, lo=-0.2, hi=1.2):
    """Seeded inputs; sampling locations uniform in [lo, hi] (outside [0, 1]: partly or wholly
    off the map)."""
    g = torch.Generator()
    g.manual_seed(seed)
    shapes = torch.tensor(sizes, dtype=torch.long)
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn((n, s, m, d), generator=g, dtype=torch.float64).to(dtype)
    loc = (lo + (hi - lo) * torch.rand((n, lq, m, len(sizes), p, 2), generator=g,
                                       dtype=torch.float64)).to(dtype)
    attn = torch.rand((n, lq, m, len(sizes), p), generator=g, dtype=torch.float64).to(dtype)
    return value, shapes, level_start_index(shapes), loc, attn


def outputs_and_grads(fn, value, shapes, starts, loc, attn, grad_seed):
    """fn's output and the gradients of <output, a seeded random tensor> w.r.t. value, loc,
    attn."""
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, attn)]
    out = fn(leaves[0], shapes, starts, leaves[1], leaves[2])
    g = torch.Generator()
    g.manual_seed(grad_seed)
    grad_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
    grads = torch.autograd.grad(out, leaves, grad_out)
    return [out.detach(), *grads]


def op(value, shapes, starts, loc, attn):
    return ops.ms_deform_attn(value, shapes, starts, loc, attn)


def reference(value, shapes, starts, loc, attn):
    return ms_deform_attn_composite(value, shapes, loc, attn)


# (N, M, D, level sizes (H, W), Lq, P)
CASES = (
    (1, 1, 1, [(1, 1)], 1, 1),
    (2, 3, 5, [(3, 5), (1, 1), (7, 2)], 7, 3),
    (1, 8, 32, [(10, 15), (5, 8), (3, 4), (2, 2)], 20, 4),
    (3, 2, 16, [(4, 4), (2, 2)], 9, 2),
    (2, 4, 64, [(6, 9), (3, 5), (2, 3), (1, 2), (1, 1)], 11, 4),
    (1, 2, 7, [(9, 1), (1, 9)], 13, 5),
    (2, 1, 33, [(5, 3)], 4, 8),
    (2, 2, 8, [(5, 6), (2, 3), (1, 1)], 6, 3),
)


class MsDeformAttnTest(unittest.TestCase):
    def assert_close(self, actual, expected, tol, what):
        """max |actual - expected| <= tol * max(1, max |expected|)."""
        self.assertEqual(actual.shape, expected.shape, what)
        self.assertEqual(actual.dtype, expected.dtype, what)
        scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
        err = (actual - expected).abs().max().item() if expected.numel() else 0.0
        self.assertLessEqual(err, tol * scale, f"{what}: max abs diff {err}, scale {scale}")

    def check_against_composite(self, inputs, tol, what, grad_seed=0):
        ours = outputs_and_grads(op, *inputs, grad_seed)
        ref = outputs_and_grads(reference, *inputs, grad_seed)
        for name, a, b in zip(("output", "grad_value", "grad_sampling_locations",
                               "grad_attention_weights"), ours, ref):
            self.assert_close(a, b, tol, f"{what}: {name}")

    def test_forward_and_backward_equal_the_composite_over_seeds(self):
        for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
            for i, (n, m, d, sizes, lq, p) in enumerate(CASES):
                for seed in range(4):
                    with self.subTest(dtype=dtype, case=i, seed=seed):
                        inputs = make_case(100 * i + seed, n, m, d, sizes, lq, p, dtype)
                        self.check_against_composite(inputs, tol, f"{dtype} case {i} seed {seed}",
                                                     grad_seed=seed)

    def test_points_far_outside_the_maps(self):
        for seed in range(3):
            inputs = make_case(seed, 2, 3, 8, [(3, 5), (7, 2), (1, 1)], 10, 4, torch.float64,
                               lo=-3.0, hi=4.0)
            self.check_against_composite(inputs, 1e-10, f"seed {seed}")
        # Wholly outside every map: output and every gradient are 0.
        value, shapes, starts, loc, attn = make_case(0, 1, 2, 4, [(3, 5), (2, 2)], 5, 3,
                                                     torch.float64)
        far = torch.full_like(loc, 2.0)
        out, gv, gl, ga = outputs_and_grads(op, value, shapes, starts, far, attn, 0)
        for t in (out, gv, gl, ga):
            self.assertEqual(t.abs().max().item(), 0.0)

    def test_points_exactly_on_pixel_centres_and_map_borders(self):
        # Dyadic locations j / 16: x = loc * W - 0.5 is exact in any float arithmetic, and for
        # these sizes it hits -1, 0, W - 1 and W (bilinear's kinks), where the location gradient
        # takes grid_sample's one-sided derivative (neighbours floor(x), floor(x) + 1).
        sizes = [(1, 1), (2, 4), (4, 2), (8, 8), (3, 5), (7, 2)]
        steps = torch.arange(-24, 41, dtype=torch.float64) / 16
        for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
            for seed in range(2):
                with self.subTest(dtype=dtype, seed=seed):
                    value, shapes, starts, _, _ = make_case(seed, 1, 2, 6, sizes, 1, 1, dtype)
                    g = torch.Generator()
                    g.manual_seed(seed)
                    xs, ys = torch.meshgrid(steps, steps, indexing="ij")
                    pts = torch.stack([xs.flatten(), ys.flatten()], dim=1)  # [65 * 65, 2]
                    perm = torch.randperm(pts.shape[0], generator=g)
                    lq, p = 65, 65
                    loc = pts[perm].view(1, lq, 1, 1, p, 2).expand(1, lq, 2, len(sizes), p, 2)
                    loc = loc.to(dtype).contiguous()
                    attn = torch.rand((1, lq, 2, len(sizes), p), generator=g,
                                      dtype=torch.float64).to(dtype)
                    self.check_against_composite((value, shapes, starts, loc, attn), tol,
                                                 f"{dtype} seed {seed}", grad_seed=seed)

    def test_gradcheck_float64(self):
        for seed, (n, m, d, sizes, lq, p) in enumerate((
                (1, 2, 3, [(3, 5), (1, 1), (2, 3)], 3, 2),
                (2, 1, 4, [(4, 3), (2, 2)], 2, 3))):
            value, shapes, starts, loc, attn = make_case(seed, n, m, d, sizes, lq, p,
                                                         torch.float64, lo=-0.1, hi=1.1)
            leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]
            self.assertTrue(torch.autograd.gradcheck(
                lambda v, l, a: ops.ms_deform_attn(v, shapes, starts, l, a), leaves, eps=1e-6,
                atol=1e-7))

    def test_non_contiguous_inputs(self):
        value, shapes, starts, loc, attn = make_case(6, 2, 3, 8, [(3, 5), (7, 2)], 5, 2,
                                                     torch.float64)
        # Same values through strided views: heads and batch swapped, every other element.
        value_t = value.transpose(0, 2).contiguous().transpose(0, 2)
        loc_s = torch.zeros(loc.shape[:-1] + (4,), dtype=loc.dtype)[..., ::2].copy_(loc)
        attn_t = attn.transpose(1, 4).contiguous().transpose(1, 4)
        self.assertFalse(value_t.is_contiguous() or loc_s.is_contiguous() or
                         attn_t.is_contiguous())
        self.check_against_composite((value_t, shapes, starts, loc_s, attn_t), 1e-10, "strided")
        self.assertTrue(torch.equal(op(value_t, shapes, starts, loc_s, attn_t),
                                    op(value, shapes, starts, loc, attn)))

    def test_thread_counts_give_the_same_result(self):
        # One head: with 3 threads the backward splits the queries into chunks accumulated in
        # private grad_value copies.
        before = torch.get_num_threads()
        try:
            for n, m in ((1, 1), (2, 3)):
                inputs = make_case(7, n, m, 16, [(6, 9), (3, 5), (1, 1)], 40, 4, torch.float64)
                results = []
                for threads in (1, 2, 3):
                    torch.set_num_threads(threads)
                    results.append(outputs_and_grads(op, *inputs, 0))
                ref = outputs_and_grads(reference, *inputs, 0)
                for got in results:
                    for a, b in zip(got, ref):
                        self.assert_close(a, b, 1e-10, f"N {n} M {m}")
        finally:
            torch.set_num_threads(before)

    def test_bfloat16_is_computed_in_float32(self):
        value, shapes, starts, loc, attn = make_case(3, 2, 4, 32, [(6, 9), (3, 5)], 12, 4,
                                                     torch.float32)
        bf = [t.bfloat16() for t in (value, loc, attn)]
        out = ops.ms_deform_attn(bf[0], shapes, starts, bf[1], bf[2])
        self.assertEqual(out.dtype, torch.bfloat16)
        expected = ops.ms_deform_attn(bf[0].float(), shapes, starts, bf[1].float(),
                                      bf[2].float()).bfloat16()
        self.assertTrue(torch.equal(out, expected))
        leaves = [t.clone().requires_grad_() for t in bf]
        ops.ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2]).float().sum().backward()
        for leaf in leaves:
            self.assertEqual(leaf.grad.dtype, torch.bfloat16)
            self.assertGreater(leaf.grad.float().abs().sum().item(), 0.0)

    def test_autocast_runs_in_float32(self):
        value, shapes, starts, loc, attn = make_case(4, 1, 2, 8, [(5, 7), (2, 3)], 6, 2,
                                                     torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ops.ms_deform_attn(value.bfloat16(), shapes, starts, loc, attn)
        self.assertEqual(out.dtype, torch.float32)
        expected = ops.ms_deform_attn(value.bfloat16().float(), shapes, starts, loc, attn)
        self.assertTrue(torch.equal(out, expected))

    def test_nan_location_or_weight_gives_nan_like_the_composite(self):
        value, shapes, starts, loc, attn = make_case(5, 1, 2, 4, [(3, 5), (2, 2)], 4, 2,
                                                     torch.float64)
        loc[0, 1, 0, 1, 0, 0] = float("nan")
        attn[0, 2, 1, 0, 1] = float("nan")
        loc[0, 2, 1, 0, 1] = 5.0  # that weight's point lies outside the map
        ours = op(value, shapes, starts, loc, attn)
        ref = reference(value, shapes, starts, loc, attn)
        self.assertTrue(torch.equal(ours.isnan(), ref.isnan()))
        self.assertEqual(int(ours.isnan().sum()), 8)  # two heads of D = 4
        self.assert_close(ours.nan_to_num(), ref.nan_to_num(), 1e-12, "finite entries")

    def test_empty_inputs(self):
        for n, lq, m, d, p in ((0, 5, 2, 4, 3), (2, 0, 2, 4, 3), (1, 3, 2, 0, 3), (1, 3, 2, 4, 0)):
            with self.subTest(n=n, lq=lq, m=m, d=d, p=p):
                value, shapes, starts, loc, attn = make_case(0, max(n, 1), m, d, [(3, 5)],
                                                             max(lq, 1), max(p, 1), torch.float32)
                value, loc, attn = value[:n], loc[:n, :lq, :, :, :p], attn[:n, :lq, :, :, :p]
                value = value.clone().requires_grad_()
                out = ops.ms_deform_attn(value, shapes, starts, loc, attn)
                self.assertEqual(list(out.shape), [n, lq, m * d])
                self.assertEqual(out.abs().sum().item(), 0.0)
                out.sum().backward()
                self.assertEqual(value.grad.shape, value.shape)
                self.assertEqual(value.grad.abs().sum().item(), 0.0)


class MsDeformAttnErrorTest(unittest.TestCase):
    def setUp(self):
        self.value, self.shapes, self.starts, self.loc, self.attn = make_case(
            0, 2, 3, 4, [(3, 5), (2, 2)], 6, 2, torch.float32)

    def assert_error(self, message, *args, fn=None):
        with self.assertRaisesRegex(RuntimeError, "^" + re.escape(message)):
            (fn or ops.ms_deform_attn)(*args)

    def args(self, **changes):
        names = ("value", "shapes", "starts", "loc", "attn")
        return [changes.get(k, getattr(self, k)) for k in names]

    def test_shapes(self):
        op_name = "setdet::ms_deform_attn"
        self.assert_error(f"{op_name}: value must be a 4-D tensor [N, S, M, D], got shape "
                          "[2, 19, 12]", *self.args(value=self.value.flatten(2)))
        self.assert_error(f"{op_name}: spatial_shapes must be a 2-D tensor [L, 2] of (H, W) per "
                          "level, L >= 1, got shape [4]", *self.args(shapes=self.shapes.flatten()))
        self.assert_error(f"{op_name}: spatial_shapes must be a 2-D tensor [L, 2] of (H, W) per "
                          "level, L >= 1, got shape [0, 2]", *self.args(shapes=self.shapes[:0]))
        self.assert_error(f"{op_name}: level_start_index must be a 1-D tensor [L] with L = 2 (the "
                          "levels of spatial_shapes), got shape [1]",
                          *self.args(starts=self.starts[:1]))
        self.assert_error(f"{op_name}: sampling_locations must have shape [N, Lq, M, L, P, 2] "
                          "with N = 2, M = 3 (from value) and L = 2 (from spatial_shapes), got "
                          "shape [2, 6, 3, 1, 2, 2]", *self.args(loc=self.loc[:, :, :, :1]))
        self.assert_error(f"{op_name}: sampling_locations must have shape [N, Lq, M, L, P, 2] "
                          "with N = 2, M = 3 (from value) and L = 2 (from spatial_shapes), got "
                          "shape [1, 6, 3, 2, 2, 2]", *self.args(loc=self.loc[:1]))
        self.assert_error(f"{op_name}: sampling_locations must have shape [N, Lq, M, L, P, 2] "
                          "with N = 2, M = 3 (from value) and L = 2 (from spatial_shapes), got "
                          "shape [2, 6, 3, 2, 2, 3]", *self.args(loc=torch.zeros(2, 6, 3, 2, 2, 3)))
        self.assert_error(f"{op_name}: attention_weights must have shape [N, Lq, M, L, P] = "
                          "[2, 6, 3, 2, 2] (from sampling_locations), got shape [2, 6, 3, 2, 1]",
                          *self.args(attn=self.attn[..., :1]))

    def test_levels_consistent_with_value(self):
        op_name = "setdet::ms_deform_attn"
        self.assert_error(f"{op_name}: value must have S = 18 positions (dim 1: the sum of H * W "
                          "over spatial_shapes), got 19",
                          *self.args(shapes=torch.tensor([[3, 5], [1, 3]])))
        self.assert_error(f"{op_name}: spatial_shapes must hold (H, W) with 1 <= H, W <= S = 19 "
                          "(value's dim 1), got (0, 5) at level 0",
                          *self.args(shapes=torch.tensor([[0, 5], [2, 2]])))
        self.assert_error(f"{op_name}: spatial_shapes must hold (H, W) with 1 <= H, W <= S = 19 "
                          "(value's dim 1), got (2, -2) at level 1",
                          *self.args(shapes=torch.tensor([[3, 5], [2, -2]])))
        self.assert_error(f"{op_name}: level_start_index must be the running sum of H * W over "
                          "spatial_shapes, [0, 15], got [0, 14]",
                          *self.args(starts=torch.tensor([0, 14])))

    def test_dtypes(self):
        op_name = "setdet::ms_deform_attn"
        self.assert_error(f"{op_name}: value must be float32, float64, bfloat16 or float16, got "
                          "int64", *self.args(value=self.value.long(), loc=self.loc.long(),
                                              attn=self.attn.long()))
        self.assert_error(f"{op_name}: sampling_locations must have the same dtype as value "
                          "(float32), got float64", *self.args(loc=self.loc.double()))
        self.assert_error(f"{op_name}: attention_weights must have the same dtype as value "
                          "(float32), got bfloat16", *self.args(attn=self.attn.bfloat16()))
        self.assert_error(f"{op_name}: spatial_shapes must be int64, got int32",
                          *self.args(shapes=self.shapes.int()))
        self.assert_error(f"{op_name}: level_start_index must be int64, got float32",
                          *self.args(starts=self.starts.float()))

    def test_devices(self):
        meta = torch.device("meta")
        self.assert_error("setdet::ms_deform_attn: spatial_shapes must be on the same device as "
                          "value (cpu), got meta", *self.args(shapes=self.shapes.to(meta)))

    def test_backward_op(self):
        grad = torch.zeros(2, 6, 11)
        self.assert_error("setdet::_ms_deform_attn_backward: grad_output must have shape "
                          "[N, Lq, M * D] = [2, 6, 12], got shape [2, 6, 11]", grad,
                          *self.args(), fn=ops._ms_deform_attn_backward)
        self.assert_error("setdet::_ms_deform_attn_backward: level_start_index must be the "
                          "running sum of H * W over spatial_shapes, [0, 15], got [0, 1]",
                          torch.zeros(2, 6, 12), *self.args(starts=torch.tensor([0, 1])),
                          fn=ops._ms_deform_attn_backward)

    def test_double_backward_is_rejected(self):
        leaves = [t.clone().requires_grad_() for t in (self.value, self.loc, self.attn)]
        out = ops.ms_deform_attn(leaves[0], self.shapes, self.starts, leaves[1], leaves[2])
        grads = torch.autograd.grad(out.square().sum(), leaves, create_graph=True)
        with self.assertRaises(RuntimeError):
            grads[1].sum().backward()


if __name__ == "__main__":
    unittest.main()
