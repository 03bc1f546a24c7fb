"""Multi-scale deformable attention: torch.ops.setdet.ms_deform_attn against the composite
(Deformable-DETR's ms_deform_attn_core_pytorch: F.grid_sample per level), side by side in one
process with the same LibTorch thread count, at DETA's sizes.

Run as /usr/bin/python3 bench/bench_deform_attn.py with SETDET_OPS_LIB=build/lib/libsetdet_ops.so
(scripts/bench.sh does this). DETA R50 on an 800 x 1216 image: 5 levels at strides 8 ... 128
(100x152, 50x76, 25x38, 13x19, 7x10; S = 20,267), 8 heads of 32 channels, 4 points per level,
batch 1, float32; the encoder's self-attention (Lq = S) and the decoder's cross-attention
(Lq = 900 queries). Sampling locations as in the model: a reference point (encoder: the query's own
pixel centre; decoder: uniform in [0, 1]^2) plus offsets ~ N(0, 2 px) on each level; attention
weights softmax-normalised over the 20 (level, point) pairs. Prints median wall times, the speed-up
(composite / setdet; goal >= 3x) and the max abs differences of the output and of the gradients
(relative to the largest reference magnitude).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "python"))
from bench_ops import format_ms, median_seconds  # noqa: E402
from setdet_testing import level_start_index, load_ops, ms_deform_attn_composite  # noqa: E402

LEVELS = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
HEADS, CHANNELS, POINTS = 8, 32, 4
GOAL = 3.0


def make_inputs(num_queries, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    shapes = torch.tensor(LEVELS, dtype=torch.long)
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn((1, s, HEADS, CHANNELS), generator=g)
    if num_queries == s:  # encoder: every position's pixel centre, normalised
        centres = []
        for h, w in LEVELS:
            ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                                    indexing="ij")
            centres.append(torch.stack([xs.flatten(), ys.flatten()], dim=1))
        reference = torch.cat(centres)
    else:
        reference = torch.rand((num_queries, 2), generator=g)
    wh = shapes.flip(1).float()  # (W, H) per level
    offsets = 2.0 * torch.randn((1, num_queries, HEADS, len(LEVELS), POINTS, 2), generator=g)
    loc = reference.view(1, num_queries, 1, 1, 1, 2) + offsets / wh.view(1, 1, 1, -1, 1, 2)
    attn = torch.randn((1, num_queries, HEADS, len(LEVELS) * POINTS), generator=g).softmax(-1)
    attn = attn.view(1, num_queries, HEADS, len(LEVELS), POINTS)
    grad_out = torch.randn((1, num_queries, HEADS * CHANNELS), generator=g)
    return value, shapes, level_start_index(shapes), loc, attn, grad_out


def relative_diff(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def run(ops, name, num_queries, repeats):
    value, shapes, starts, loc, attn, grad_out = make_inputs(num_queries, 0)

    def ours(v, l, a):
        return ops.ms_deform_attn(v, shapes, starts, l, a)

    def peer(v, l, a):
        return ms_deform_attn_composite(v, shapes, l, a)

    def forward(fn):
        with torch.no_grad():
            return fn(value, loc, attn)

    leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]

    def forward_backward(fn):
        for t in leaves:
            t.grad = None
        fn(*leaves).backward(grad_out)
        return [t.grad for t in leaves]

    rows = []
    for what, step, names in (("forward", forward, ("output",)),
                              ("forward + backward", forward_backward,
                               ("grad value", "grad loc", "grad weights"))):
        a, b = step(ours), step(peer)  # the comparison doubles as the warm-up
        a, b = (a, b) if isinstance(a, list) else ([a], [b])
        diffs = ", ".join(f"{n} {relative_diff(x, y):.1e}" for n, x, y in zip(names, a, b))
        t_ours = median_seconds(lambda: step(ours), repeats)
        t_peer = median_seconds(lambda: step(peer), repeats)
        rows.append(dict(name=f"{name}, {what}", ours=t_ours, peer=t_peer, ratio=t_peer / t_ours,
                         diffs=diffs, close=all(relative_diff(x, y) < 1e-4 for x, y in zip(a, b)),
                         repeats=repeats))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="LibTorch threads, both sides")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    ops = load_ops()
    s = sum(h * w for h, w in LEVELS)
    rows = (run(ops, f"encoder (Lq = S = {s:,})", s, args.repeats) +
            run(ops, "decoder (Lq = 900)", 900, 4 * args.repeats))
    print(f"ms_deform_attn: {torch.get_num_threads()} LibTorch thread(s) on both sides; torch "
          f"{torch.__version__}; float32; levels {LEVELS}, M {HEADS}, D {CHANNELS}, P {POINTS}, "
          f"N 1; 1-min load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print()
    print("| case | setdet median (ms) | composite median (ms) | speed-up (composite / setdet) "
          "| goal | max abs diff / max abs (composite) | repeats |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['name']} | {format_ms(r['ours'])} | {format_ms(r['peer'])} | "
              f"{r['ratio']:.1f}x | >= {GOAL:g}x | {r['diffs']} | {r['repeats']} |")
    if not all(r["close"] for r in rows):
        print("\nERROR: setdet and the composite differ by more than 1e-4 (relative) above")
        sys.exit(1)


if __name__ == "__main__":
    main()
