"""Shared helpers for the Python tests and benchmarks of torch.ops.setdet.

The operator library is loaded from the path in the environment variable SETDET_OPS_LIB
(ctest and scripts/bench.sh set it to build/lib/libsetdet_ops.so).

Box generators return float64 xyxy boxes in pixels (cast with .to(dtype)), all seeded:
- uniform:   top-left corners uniform in [0, 1000]^2, width and height uniform in [1, 100].
- clustered: K = max(1, N // 50) centres uniform in [0, 2000]^2, each with a base size w, h uniform
             in [20, 200]; each box picks a centre, jitters it by N(0, 10 px) and scales the base
             size by uniform(0.9, 1.1). (Same definition as the dedup helper's C++ benchmarks.)
- crowded:   every box centred in a 40 x 40 px region with width and height uniform in [80, 120],
             so nearly all pairs overlap heavily.
"""
import os

import torch

BOX_DISTRIBUTIONS = ("uniform", "clustered", "crowded")


def load_ops():
    """Loads the library named by SETDET_OPS_LIB (once) and returns torch.ops.setdet."""
    path = os.environ.get("SETDET_OPS_LIB")
    if not path:
        raise RuntimeError("SETDET_OPS_LIB is not set: point it at build/lib/libsetdet_ops.so")
    if not os.path.isfile(path):
        raise RuntimeError(f"SETDET_OPS_LIB={path} does not exist (build the setdet_ops target)")
    if path not in torch.ops.loaded_libraries:
        torch.ops.load_library(path)
    return torch.ops.setdet


def _generator(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _uniform(g, shape, lo, hi):
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def _from_centres(cx, cy, w, h):
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def uniform_boxes(n, seed):
    g = _generator(seed)
    x1y1 = _uniform(g, (n, 2), 0.0, 1000.0)
    wh = _uniform(g, (n, 2), 1.0, 100.0)
    return torch.cat([x1y1, x1y1 + wh], dim=1)


def clustered_boxes(n, seed):
    g = _generator(seed)
    k = max(1, n // 50)
    centres = _uniform(g, (k, 2), 0.0, 2000.0)
    sizes = _uniform(g, (k, 2), 20.0, 200.0)
    which = torch.randint(0, k, (n,), generator=g)
    c = centres[which] + 10.0 * torch.randn((n, 2), generator=g, dtype=torch.float64)
    s = sizes[which] * _uniform(g, (n, 2), 0.9, 1.1)
    return _from_centres(c[:, 0], c[:, 1], s[:, 0], s[:, 1])


def crowded_boxes(n, seed):
    g = _generator(seed)
    c = _uniform(g, (n, 2), 500.0, 540.0)
    s = _uniform(g, (n, 2), 80.0, 120.0)
    return _from_centres(c[:, 0], c[:, 1], s[:, 0], s[:, 1])


def make_boxes(distribution, n, seed):
    return {"uniform": uniform_boxes, "clustered": clustered_boxes,
            "crowded": crowded_boxes}[distribution](n, seed)


def make_scores(n, seed, ties=False):
    """Scores uniform in (0, 1); with ties=True only 10 distinct values (many equal scores)."""
    g = _generator(seed + 7919)
    if ties:
        return (torch.randint(1, 11, (n,), generator=g) / 10.0).to(torch.float64)
    return torch.rand((n,), generator=g, dtype=torch.float64)


def make_labels(n, seed, num_classes):
    return torch.randint(0, num_classes, (n,), generator=_generator(seed + 104729))


def stable_score_order(indices, scores):
    """indices sorted by score descending, equal scores by ascending index."""
    idx = [int(i) for i in indices]
    return sorted(idx, key=lambda i: (-float(scores[i]), i))


def ms_deform_attn_composite(value, spatial_shapes, sampling_locations, attention_weights):
    """Multi-scale deformable attention from F.grid_sample, one call per level, as
    Deformable-DETR's ms_deform_attn_core_pytorch defines it: value [N, S, M, D], spatial_shapes
    [L, 2], sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P] ->
    [N, Lq, M * D]."""
    import torch.nn.functional as F
    n, _, m, d = value.shape
    _, lq, _, num_levels, p, _ = sampling_locations.shape
    sizes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    levels = value.split([h * w for h, w in sizes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(sizes):
        # [N, H*W, M, D] -> [N*M, D, H, W]; grid [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        maps = levels[level].permute(0, 2, 3, 1).reshape(n * m, d, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).reshape(n * m, lq, p, 2)
        sampled.append(F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # [N*M, D, Lq, P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * p)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # [N*M, D, Lq]
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def level_start_index(spatial_shapes):
    """[L, 2] (H, W) -> [L]: 0, then the running sum of H * W."""
    areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return areas.cumsum(0) - areas


def run_cli(*args, threads=2, timeout=900):
    """Runs the setdet CLI named by SETDET_BIN (`setdet` on PATH otherwise) with --threads and
    `args`; returns the subprocess.CompletedProcess (text stdout / stderr)."""
    import subprocess
    binary = os.environ.get("SETDET_BIN", "setdet")
    return subprocess.run([binary, "--threads", str(threads), *args], capture_output=True,
                          text=True, timeout=timeout)
