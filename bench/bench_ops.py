"""Side-by-side speed of torch.ops.setdet against torchvision.ops and scipy, in one process.

Run as /usr/bin/python3 bench/bench_ops.py with SETDET_OPS_LIB=build/lib/libsetdet_ops.so
(scripts/bench.sh does this). Prints a markdown table of median wall times, the speed ratio
(peer / setdet) and whether both produced identical outputs. --quick skips the 100k case.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import scipy
import scipy.optimize
import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "python"))
from setdet_testing import load_ops, make_boxes, make_labels, make_scores  # noqa: E402


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(name, ours, peer, same, repeats, goal):
    """ours / peer: zero-argument callables; same(a, b) compares their outputs. The comparison
    call doubles as the warm-up (allocations, lazy initialisation)."""
    identical = same(ours(), peer())
    t_ours = median_seconds(ours, repeats)
    t_peer = median_seconds(peer, repeats)
    return dict(name=name, ours=t_ours, peer=t_peer, ratio=t_peer / t_ours, goal=goal,
                identical=identical, repeats=repeats)


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


def format_ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip nms at 100k boxes (~40 s)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    ops = load_ops()
    sizes = [(1000, 50, None), (10000, 10, 10.0)]
    if not args.quick:
        sizes.append((100000, 3, 50.0))
    rows = nms_cases(ops, sizes) + [batched_nms_case(ops)] + lsa_cases(ops)

    print(f"setdet ops: {ops.num_threads()} thread(s) (setdet::num_threads()); torchvision "
          f"{torchvision.__version__} nms: 1 thread; scipy {scipy.__version__}; torch "
          f"{torch.__version__}; float32 boxes, IoU threshold 0.5; 1-min load average "
          f"{load_before:.2f} before / {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores")
    print()
    print("| case | setdet median (ms) | peer median (ms) | speed-up (peer / setdet) | goal "
          "| identical | repeats |")
    print("|---|---:|---:|---:|---:|:---:|---:|")
    for r in rows:
        goal = f">= {r['goal']:g}x" if r["goal"] else "-"
        print(f"| {r['name']} | {format_ms(r['ours'])} | {format_ms(r['peer'])} | "
              f"{r['ratio']:.1f}x | {goal} | {'yes' if r['identical'] else 'NO'} | "
              f"{r['repeats']} |")
    if not all(r["identical"] for r in rows):
        print("\nERROR: setdet and the peer produced different outputs in a case above")
        sys.exit(1)


if __name__ == "__main__":
    main()
