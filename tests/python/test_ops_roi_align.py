"""Parity of torch.ops.setdet.roi_align (forward and input gradient) with torchvision 0.14's
torchvision.ops.roi_align on seeded random cases: RoIs partly or fully outside the map, zero-size
and inverted RoIs, both `aligned` values, sampling_ratio 0 / 1 / 2, several spatial scales,
float32 and float64, NCHW and channels-last input; gradcheck in float64; error messages."""
import math
import re
import unittest

import torch
import torchvision

from setdet_testing import load_ops

ops = load_ops()

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}
SCALES = (1.0, 0.5, 0.25, 1.0 / 16)


def make_rois(g, k, batch_size, image_h, image_w, dtype):
    """[k, 5] rois in image pixels: mostly boxes around the image (up to 30% outside each side),
    plus fully outside, zero-width / zero-height / zero-area and inverted (x2 < x1) boxes."""
    x1 = (torch.rand(k, generator=g, dtype=torch.float64) * 1.6 - 0.3) * image_w
    y1 = (torch.rand(k, generator=g, dtype=torch.float64) * 1.6 - 0.3) * image_h
    w = torch.rand(k, generator=g, dtype=torch.float64) * 0.8 * image_w
    h = torch.rand(k, generator=g, dtype=torch.float64) * 0.8 * image_h
    boxes = torch.stack([x1, y1, x1 + w, y1 + h], 1)
    special = [
        [image_w * 1.2, image_h * 0.1, image_w * 1.5, image_h * 0.4],  # right of the map
        [-image_w * 0.6, -image_h * 0.5, -image_w * 0.1, -image_h * 0.05],  # above-left
        [image_w * 0.3, image_h * 0.3, image_w * 0.3, image_h * 0.7],  # zero width
        [image_w * 0.2, image_h * 0.6, image_w * 0.5, image_h * 0.6],  # zero height
        [image_w * 0.5, image_h * 0.5, image_w * 0.5, image_h * 0.5],  # a point
        [image_w * 0.7, image_h * 0.8, image_w * 0.2, image_h * 0.1],  # inverted
        [-image_w * 0.2, -image_h * 0.2, image_w * 1.2, image_h * 1.2],  # larger than the map
        [image_w - 0.3, image_h - 0.3, image_w + 3.0, image_h + 3.0],  # at the far corner
    ]
    boxes = torch.cat([boxes, torch.tensor(special, dtype=torch.float64)])
    batch = torch.randint(0, batch_size, (boxes.shape[0],), generator=g).to(torch.float64)
    return torch.cat([batch[:, None], boxes], 1).to(dtype)


def make_case(seed, dtype, scale, n=2, c=3, k=24):
    g = torch.Generator()
    g.manual_seed(seed)
    h = int(torch.randint(5, 30, (1,), generator=g))
    w = int(torch.randint(5, 30, (1,), generator=g))
    x = torch.randn((n, c, h, w), generator=g, dtype=torch.float64).to(dtype)
    rois = make_rois(g, k, n, h / scale, w / scale, dtype)
    return x, rois


def forward_and_grad(fn, x, rois, go, *args):
    x = x.detach().requires_grad_(True)
    out = fn(x, rois, *args)
    (grad,) = torch.autograd.grad(out, x, go)
    return out.detach(), grad


def setdet_roi_align(x, rois, scale, ph, pw, sampling_ratio, aligned):
    return ops.roi_align(x, rois, scale, ph, pw, sampling_ratio, aligned)


def torchvision_roi_align(x, rois, scale, ph, pw, sampling_ratio, aligned):
    return torchvision.ops.roi_align(x, rois, (ph, pw), scale, sampling_ratio, aligned)


class RoIAlignParityTest(unittest.TestCase):
    def check_case(self, x, rois, scale, ph, pw, sampling_ratio, aligned, channels_last=False):
        g = torch.Generator()
        g.manual_seed(x.numel() + rois.shape[0])
        go = torch.randn((rois.shape[0], x.shape[1], ph, pw), generator=g,
                         dtype=torch.float64).to(x.dtype)
        args = (scale, ph, pw, sampling_ratio, aligned)
        want, want_grad = forward_and_grad(torchvision_roi_align, x, rois, go, *args)
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        got, got_grad = forward_and_grad(setdet_roi_align, xin, rois, go, *args)
        self.assertEqual(got.dtype, x.dtype)
        self.assertEqual(tuple(got.shape), (rois.shape[0], x.shape[1], ph, pw))
        torch.testing.assert_close(got, want, **TOLERANCE[x.dtype])
        torch.testing.assert_close(got_grad, want_grad, **TOLERANCE[x.dtype])
        if channels_last:
            self.assertTrue(got.is_contiguous(memory_format=torch.channels_last))
            self.assertTrue(got_grad.is_contiguous(memory_format=torch.channels_last))
        return got, got_grad, want, want_grad

    def test_seeded_cases(self):
        seed = 0
        for dtype in (torch.float32, torch.float64):
            for aligned in (False, True):
                for sampling_ratio in (0, 1, 2):
                    for scale in SCALES:
                        for _ in range(2):
                            seed += 1
                            with self.subTest(seed=seed, dtype=dtype, aligned=aligned,
                                              sampling_ratio=sampling_ratio, scale=scale):
                                x, rois = make_case(seed, dtype, scale)
                                self.check_case(x, rois, scale, 7, 7, sampling_ratio, aligned)

    def test_channels_last_input(self):
        for dtype in (torch.float32, torch.float64):
            for aligned in (False, True):
                for sampling_ratio in (0, 2):
                    with self.subTest(dtype=dtype, aligned=aligned, sampling_ratio=sampling_ratio):
                        x, rois = make_case(77, dtype, 0.25, n=2, c=19)
                        self.check_case(x, rois, 0.25, 7, 7, sampling_ratio, aligned,
                                        channels_last=True)

    def test_bitwise_equal_to_torchvision(self):
        # Same arithmetic as torchvision's CPU kernel, operation for operation.
        for dtype in (torch.float32, torch.float64):
            for channels_last in (False, True):
                with self.subTest(dtype=dtype, channels_last=channels_last):
                    x, rois = make_case(5, dtype, 0.5, c=8, k=60)
                    got, got_grad, want, want_grad = self.check_case(
                        x, rois, 0.5, 7, 7, 0, False, channels_last=channels_last)
                    self.assertTrue(torch.equal(got, want))
                    self.assertTrue(torch.equal(got_grad, want_grad))

    def test_non_square_output_and_other_sizes(self):
        for ph, pw in ((1, 1), (2, 5), (14, 14), (3, 1)):
            for sampling_ratio in (0, 3):
                with self.subTest(ph=ph, pw=pw, sampling_ratio=sampling_ratio):
                    x, rois = make_case(300 + ph * 10 + pw, torch.float64, 0.5)
                    self.check_case(x, rois, 0.5, ph, pw, sampling_ratio, True)

    def test_many_rois_and_channels(self):
        x, rois = make_case(11, torch.float32, 0.25, n=3, c=64, k=300)
        self.check_case(x, rois, 0.25, 7, 7, 2, False)
        self.check_case(x, rois, 0.25, 7, 7, 2, False, channels_last=True)

    def test_large_rois_with_adaptive_sampling(self):
        # A RoI far larger than the map: ~286 x 286 samples per bin, nearly all outside.
        x = torch.randn((1, 2, 20, 20), dtype=torch.float64)
        rois = torch.tensor([[0, -900.0, -1000.0, 1100.0, 1000.0],
                             [0, 5.0, -1500.0, 6.0, 1500.0]], dtype=torch.float64)
        for aligned in (False, True):
            with self.subTest(aligned=aligned):
                self.check_case(x, rois, 1.0, 7, 7, 0, aligned)

    def test_results_do_not_depend_on_thread_count(self):
        x, rois = make_case(21, torch.float32, 0.5, n=2, c=16, k=100)
        go = torch.randn((rois.shape[0], 16, 7, 7))
        before = torch.get_num_threads()
        results = []
        try:
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                for channels_last in (False, True):
                    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
                    results.append(forward_and_grad(setdet_roi_align, xin, rois, go, 0.5, 7, 7, 2,
                                                    True))
        finally:
            torch.set_num_threads(before)
        for out, grad in results[1:]:
            self.assertTrue(torch.equal(out, results[0][0]))
            self.assertTrue(torch.equal(grad, results[0][1]))

    def test_non_contiguous_input_and_grad(self):
        x, rois = make_case(31, torch.float64, 0.5, n=2, c=6)
        xt = x.transpose(2, 3).contiguous().transpose(2, 3)[:, ::2]
        self.assertFalse(xt.is_contiguous())
        self.check_case(xt, rois, 0.5, 4, 4, 2, False)
        grad = torch.randn((rois.shape[0], 4, 4, 3), dtype=torch.float64).permute(0, 3, 1, 2)
        got = ops._roi_align_backward(grad, rois, 0.5, 4, 4, 2, 3, x.shape[2], x.shape[3], 2,
                                      False)
        want = torch.ops.torchvision._roi_align_backward(grad, rois, 0.5, 4, 4, 2, 3, x.shape[2],
                                                         x.shape[3], 2, False)
        torch.testing.assert_close(got, want, **TOLERANCE[torch.float64])

    def test_gradcheck_float64(self):
        g = torch.Generator()
        g.manual_seed(3)
        x = torch.randn((2, 2, 6, 7), generator=g, dtype=torch.float64, requires_grad=True)
        rois = torch.tensor([[0, 0.5, 1.0, 9.0, 8.0], [1, -3.0, -2.0, 5.0, 4.0],
                             [1, 10.0, 9.0, 16.0, 15.0], [0, 4.0, 4.0, 4.0, 9.0],
                             [0, 8.0, 7.0, 2.0, 3.0]], dtype=torch.float64)
        for aligned in (False, True):
            for sampling_ratio in (0, 2):
                with self.subTest(aligned=aligned, sampling_ratio=sampling_ratio):
                    self.assertTrue(torch.autograd.gradcheck(
                        lambda t: ops.roi_align(t, rois, 0.5, 3, 2, sampling_ratio, aligned),
                        (x,)))
                    xl = x.detach().contiguous(memory_format=torch.channels_last)
                    self.assertTrue(torch.autograd.gradcheck(
                        lambda t: ops.roi_align(t, rois, 0.5, 3, 2, sampling_ratio, aligned),
                        (xl.requires_grad_(True),)))

    def test_bfloat16_is_computed_in_float32(self):
        x, rois = make_case(41, torch.float32, 0.5, c=5)
        xb = x.to(torch.bfloat16)
        got = ops.roi_align(xb, rois, 0.5, 7, 7, 2, False)
        self.assertEqual(got.dtype, torch.bfloat16)
        want = torchvision.ops.roi_align(xb.float(), rois, 7, 0.5, 2, False).to(torch.bfloat16)
        self.assertTrue(torch.equal(got, want))
        xg = xb.detach().requires_grad_(True)
        go = torch.randn(got.shape).to(torch.bfloat16)
        (grad,) = torch.autograd.grad(ops.roi_align(xg, rois, 0.5, 7, 7, 2, False), xg, go)
        self.assertEqual(grad.dtype, torch.bfloat16)
        xf = xb.float().requires_grad_(True)
        (want_grad,) = torch.autograd.grad(torchvision.ops.roi_align(xf, rois, 7, 0.5, 2, False),
                                           xf, go.float())
        self.assertTrue(torch.equal(grad, want_grad.to(torch.bfloat16)))

    def test_empty_rois(self):
        x = torch.randn((2, 4, 8, 8), requires_grad=True)
        out = ops.roi_align(x, torch.zeros((0, 5)), 1.0, 7, 6, 2, False)
        self.assertEqual(tuple(out.shape), (0, 4, 7, 6))
        out.sum().backward()
        self.assertTrue(torch.equal(x.grad, torch.zeros_like(x)))

    def test_rois_get_no_gradient(self):
        x, rois = make_case(51, torch.float64, 1.0)
        rois.requires_grad_(True)
        x.requires_grad_(True)
        ops.roi_align(x, rois, 1.0, 2, 2, 2, False).sum().backward()
        self.assertIsNone(rois.grad)
        self.assertIsNotNone(x.grad)

    def test_double_backward_is_an_error(self):
        x, rois = make_case(61, torch.float64, 1.0)
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(ops.roi_align(x, rois, 1.0, 2, 2, 2, False).pow(2).sum(), x,
                                      create_graph=True)
        with self.assertRaises(RuntimeError):
            grad.sum().backward()


class RoIAlignErrorTest(unittest.TestCase):
    X = torch.zeros((2, 3, 8, 8))
    ROIS = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0], [1.0, 0.0, 2.0, 3.0, 7.0]])

    def assert_error(self, message, *args):
        with self.assertRaisesRegex(RuntimeError, "^" + re.escape(message)):
            ops.roi_align(*args)

    def with_value(self, index, value):
        r = self.ROIS.clone()
        r[index] = value
        return r

    def test_shapes(self):
        self.assert_error("setdet::roi_align: rois must be a 2-D tensor of shape [K, 5] (batch "
                          "index, x1, y1, x2, y2), got shape [2, 4]",
                          self.X, self.ROIS[:, 1:], 1.0, 7, 7, 2, False)
        self.assert_error("setdet::roi_align: rois must be a 2-D tensor of shape [K, 5] (batch "
                          "index, x1, y1, x2, y2), got shape [10]",
                          self.X, self.ROIS.flatten(), 1.0, 7, 7, 2, False)
        self.assert_error("setdet::roi_align: input must be a 4-D tensor [N, C, H, W], got shape "
                          "[3, 8, 8]", self.X[0], self.ROIS, 1.0, 7, 7, 2, False)
        self.assert_error("setdet::roi_align: the feature map must have height and width > 0 to "
                          "sample RoIs from, got 0 x 8", self.X[:, :, :0], self.ROIS, 1.0, 7, 7,
                          2, False)

    def test_dtypes(self):
        self.assert_error("setdet::roi_align: input must be float32, float64, bfloat16 or "
                          "float16, got int64", self.X.long(), self.ROIS, 1.0, 7, 7, 2, False)
        self.assert_error("setdet::roi_align: rois must have the same dtype as input (float32), "
                          "got float64", self.X, self.ROIS.double(), 1.0, 7, 7, 2, False)
        self.assert_error("setdet::roi_align: rois must have the same dtype as input (bfloat16 "
                          "or float32), got float64", self.X.bfloat16(), self.ROIS.double(), 1.0,
                          7, 7, 2, False)

    def test_batch_index(self):
        self.assert_error("setdet::roi_align: rois[1, 0] must be a batch index, an integer in "
                          "[0, 2), got 2", self.X, self.with_value((1, 0), 2.0), 1.0, 7, 7, 2,
                          False)
        self.assert_error("setdet::roi_align: rois[0, 0] must be a batch index, an integer in "
                          "[0, 2), got -1", self.X, self.with_value((0, 0), -1.0), 1.0, 7, 7, 2,
                          False)
        self.assert_error("setdet::roi_align: rois[1, 0] must be a batch index, an integer in "
                          "[0, 2), got 0.5", self.X, self.with_value((1, 0), 0.5), 1.0, 7, 7, 2,
                          False)

    def test_non_finite_rois(self):
        for value, text in ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")):
            with self.subTest(value=text):
                self.assert_error(f"setdet::roi_align: rois must be finite, got {text} at "
                                  "rois[1, 3]", self.X, self.with_value((1, 3), value), 1.0, 7, 7,
                                  2, False)

    def test_parameters(self):
        self.assert_error("setdet::roi_align: pooled_height must be > 0, got 0", self.X,
                          self.ROIS, 1.0, 0, 7, 2, False)
        self.assert_error("setdet::roi_align: pooled_width must be > 0, got -2", self.X,
                          self.ROIS, 1.0, 7, -2, 2, False)
        for scale, text in ((0.0, "0"), (-0.25, "-0.25"), (math.nan, "nan"), (math.inf, "inf")):
            with self.subTest(spatial_scale=text):
                self.assert_error(f"setdet::roi_align: spatial_scale must be finite and > 0, got "
                                  f"{text}", self.X, self.ROIS, scale, 7, 7, 2, False)

    def test_backward_arguments(self):
        with self.assertRaisesRegex(RuntimeError, "^" + re.escape(
                "setdet::_roi_align_backward: grad must have shape [K, channels, pooled_height, "
                "pooled_width] = [2, 3, 7, 7], got [2, 3, 7, 6]")):
            ops._roi_align_backward(torch.zeros((2, 3, 7, 6)), self.ROIS, 1.0, 7, 7, 2, 3, 8, 8,
                                    2, False)
        with self.assertRaisesRegex(RuntimeError, "^" + re.escape(
                "setdet::_roi_align_backward: rois[1, 0] must be a batch index, an integer in "
                "[0, 1), got 1")):
            ops._roi_align_backward(torch.zeros((2, 3, 7, 7)), self.ROIS, 1.0, 7, 7, 1, 3, 8, 8,
                                    2, False)


if __name__ == "__main__":
    unittest.main()
