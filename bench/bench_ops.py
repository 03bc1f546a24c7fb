"""Side-by-side speed of torch.ops.setdet against torchvision.ops and scipy, in one process.

Run as /usr/bin/python3 bench/bench_ops.py with SETDET_OPS_LIB=build/lib/libsetdet_ops.so
(scripts/bench.sh does this). Prints a markdown table of median wall times, the speed ratio
(peer / setdet), whether both produced identical outputs and, for floating-point outputs, their
largest absolute difference. --quick skips the 100k case.
"""
import argparse
import math
import os
import sys

import numpy as np
import scipy
import scipy.optimize
import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "python"))
from setdet_testing import load_ops, make_boxes, make_labels, make_scores  # noqa: E402

import process_timing  # noqa: E402


def median_seconds(fn, repeats):
    return process_timing.median_seconds(fn, repeats, warmup=0)  # run_case warms up itself


def run_case(name, ours, peer, same, repeats, goal, diff=None):
    """ours / peer: zero-argument callables; same(a, b) compares their outputs, diff(a, b) (if
    given) measures their largest difference. The comparison call doubles as the warm-up
    (allocations, lazy initialisation)."""
    a, b = ours(), peer()
    identical = same(a, b)
    max_diff = diff(a, b) if diff else None
    del a, b
    t_ours = median_seconds(ours, repeats)
    t_peer = median_seconds(peer, repeats)
    return dict(name=name, ours=t_ours, peer=t_peer, ratio=t_peer / t_ours, goal=goal,
                identical=identical, max_diff=max_diff, repeats=repeats)


def nms_cases(ops, sizes):
    rows = []
    for n, repeats, goal in sizes:
        boxes = make_boxes("clustered", n, 0).float()
        scores = make_scores(n, 0).float()
        rows.append(run_case(
            f"nms, {n:,} clustered boxes (vs torchvision.ops.nms)",
            lambda: ops.nms(boxes, scores, 0.5),
            lambda: torchvision.ops.nms(boxes, scores, 0.5),
            torch.equal, repeats, goal))
    return rows


def batched_nms_case(ops):
    n, classes = 10000, 80
    boxes = make_boxes("clustered", n, 1).float()
    scores = make_scores(n, 1).float()
    idxs = make_labels(n, 1, classes)

    def same(a, b):
        # torchvision's final sort by score is not stable: tied scores may come in either order.
        return torch.equal(a, b) or (torch.equal(a.sort().values, b.sort().values) and
                                     torch.equal(scores[a], scores[b]))

    return run_case(
        f"batched_nms, {n:,} clustered boxes, {classes} classes (vs torchvision.ops.batched_nms)",
        lambda: ops.batched_nms(boxes, scores, idxs, 0.5),
        lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5),
        same, 10, 5.0)


def lsa_cases(ops):
    rows = []
    for (n, m), repeats in (((100, 100), 50), ((300, 100), 50), ((900, 300), 20)):
        g = torch.Generator()
        g.manual_seed(n * 1000 + m)
        cost = torch.rand((n, m), generator=g, dtype=torch.float64)
        cost_np = cost.numpy()

        def same(a, b):
            return (np.array_equal(a[0].numpy(), b[0]) and np.array_equal(a[1].numpy(), b[1]))

        rows.append(run_case(
            f"linear_sum_assignment, {n}x{m} (vs scipy.optimize.linear_sum_assignment)",
            lambda: ops.linear_sum_assignment(cost),
            lambda: scipy.optimize.linear_sum_assignment(cost_np),
            same, repeats, 1.5))
    return rows


def fpn_rois(g, k, batch_size, image_h, image_w):
    """[k, 5] rois: centres uniform over the image, sides log-uniform in [16, 512] px (aspect
    ratios up to 4:1), image index uniform."""
    centre = torch.rand((k, 2), generator=g) * torch.tensor([image_w, image_h])
    side = 16.0 * torch.exp(torch.rand((k, 2), generator=g) * math.log(32.0))
    batch = torch.randint(0, batch_size, (k, 1), generator=g).float()
    return torch.cat([batch, centre - side / 2, centre + side / 2], 1)


def roi_align_cases(ops):
    """FPN-sized RoIAlign: 2 images of 800 x 1216 px, a P2 map (stride 4, 200 x 304) of 256
    channels, 512 RoIs, 7 x 7 bins, sampling_ratio 2, aligned False (Faster R-CNN's box head)."""
    g = torch.Generator()
    g.manual_seed(0)
    n, c, h, w, k, scale = 2, 256, 200, 304, 512, 0.25
    x = torch.randn((n, c, h, w), generator=g)
    rois = fpn_rois(g, k, n, h / scale, w / scale)
    args = (scale, 7, 7, 2, False)
    grad = torch.randn((k, c, 7, 7), generator=g)
    bwd_args = (scale, 7, 7, n, c, h, w, 2, False)

    def max_abs_diff(a, b):
        return float((a - b).abs().max())

    def fwd_bwd(fn, inp):
        def run():
            xg = inp.detach().requires_grad_(True)
            out = fn(xg, rois, *args)
            return torch.autograd.grad(out, xg, grad)[0]
        return run

    def tv_roi_align(inp, r, *a):
        return torchvision.ops.roi_align(inp, r, (a[1], a[2]), a[0], a[3], a[4])

    size = "2 x 256 x 200 x 304, 512 RoIs, 7x7, sampling_ratio 2"
    rows = []
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    for layout, inp in (("NCHW", x), ("channels-last", x_nhwc)):
        g_in = grad.contiguous(memory_format=torch.channels_last) if layout != "NCHW" else grad
        rows.append(run_case(
            f"roi_align forward, {layout} input, {size} (vs torchvision.ops.roi_align)",
            lambda: ops.roi_align(inp, rois, *args),
            lambda: tv_roi_align(inp, rois, *args),
            torch.equal, 10, 1.5, max_abs_diff))
        rows.append(run_case(
            f"roi_align backward (_roi_align_backward), {layout} grad, {size} (vs torchvision)",
            lambda: ops._roi_align_backward(g_in, rois, *bwd_args),
            lambda: torch.ops.torchvision._roi_align_backward(g_in, rois, *bwd_args),
            torch.equal, 10, 1.5, max_abs_diff))
        rows.append(run_case(
            f"roi_align forward + backward (autograd), {layout} input, {size} (vs torchvision)",
            fwd_bwd(ops.roi_align, inp), fwd_bwd(tv_roi_align, inp),
            torch.equal, 5, 1.5, max_abs_diff))
    return rows


def format_ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip nms at 100k boxes (~40 s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch.set_num_threads for roi_align, both sides (default: all cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    ops = load_ops()
    sizes = [(1000, 50, None), (10000, 10, 10.0)]
    if not args.quick:
        sizes.append((100000, 3, 50.0))
    rows = (nms_cases(ops, sizes) + [batched_nms_case(ops)] + lsa_cases(ops) +
            roi_align_cases(ops))

    print(f"setdet ops: {ops.num_threads()} thread(s) (setdet::num_threads()); torchvision "
          f"{torchvision.__version__} nms: 1 thread; roi_align: torch.set_num_threads("
          f"{args.threads}) on both sides (torchvision's CPU kernel is single-threaded); scipy "
          f"{scipy.__version__}; torch {torch.__version__}; float32 boxes, IoU threshold 0.5; "
          f"1-min load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print()
    print("| case | setdet median (ms) | peer median (ms) | speed-up (peer / setdet) | goal "
          "| identical | max abs diff | repeats |")
    print("|---|---:|---:|---:|---:|:---:|---:|---:|")
    for r in rows:
        goal = f">= {r['goal']:g}x" if r["goal"] else "-"
        diff = "-" if r["max_diff"] is None else f"{r['max_diff']:.3g}"
        print(f"| {r['name']} | {format_ms(r['ours'])} | {format_ms(r['peer'])} | "
              f"{r['ratio']:.1f}x | {goal} | {'yes' if r['identical'] else 'NO'} | {diff} | "
              f"{r['repeats']} |")
    if not all(r["identical"] for r in rows):
        print("\nERROR: setdet and the peer produced different outputs in a case above")
        sys.exit(1)


if __name__ == "__main__":
    main()
