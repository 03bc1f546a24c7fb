"""COCO bbox evaluation, whole processes side by side: `setdet eval` vs pycocotools vs
faster-coco-eval on a synthetic COCO-val-sized set (bench/gen_coco_bench.py: 5,000 images, 80
categories, ~36k ground truth, ~250k detections), cached under $SETDET_BENCH_CACHE
(default /tmp/setdet_bench).

Each tool runs as its own process (load JSON, evaluate, accumulate, summarize); the table gives
the median wall time, the ratio to setdet, the child's peak resident memory (wait4 ru_maxrss) and
the largest difference of its 12 stats from pycocotools'.

pycocotools and faster-coco-eval are found on /usr/bin/python3's sys.path or in the directories
listed in $SETDET_BENCH_PYTHONPATH (os.pathsep-separated); a missing one is reported as
"n/a (not installed)". Environment: SETDET_BIN (the setdet binary), SETDET_BENCH_REPEATS (runs per
tool, default 3), SETDET_BENCH_PYCOCO_REPEATS (default 1: pycocotools takes about a minute)."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_coco_bench  # noqa: E402
from process_timing import measure  # noqa: E402

STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
              "ARl"]

# Child scripts: argv = gt.json dt.json out.json; write {"stats": [...12], "version": ...}.
PYCOCOTOOLS_SCRIPT = r"""
import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
E = COCOeval(gt, dt, "bbox")
E.evaluate(); E.accumulate(); E.summarize()
json.dump({"stats": [float(s) for s in E.stats]}, open(sys.argv[3], "w"))
"""

FASTER_COCO_EVAL_SCRIPT = r"""
import json, sys
from faster_coco_eval import COCO, COCOeval_faster
gt = COCO(sys.argv[1])
dt = gt.loadRes(sys.argv[2])
E = COCOeval_faster(gt, dt, "bbox")
E.evaluate(); E.accumulate(); E.summarize()
json.dump({"stats": [float(s) for s in E.stats[:12]]}, open(sys.argv[3], "w"))
"""

VERSION_SCRIPT = r"""
import importlib, os, sys
name, dist = sys.argv[1], sys.argv[2]
module = importlib.import_module(name)
version = getattr(module, "__version__", None)
if version is None:
    try:
        from importlib.metadata import version as dist_version
        version = dist_version(dist)
    except Exception:
        version = "unknown version"
print(version)
print(os.path.dirname(module.__file__))
"""


def child_env():
    env = dict(os.environ)
    extra = [p for p in os.environ.get("SETDET_BENCH_PYTHONPATH", "").split(os.pathsep) if p]
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(extra + [p for p in env.get("PYTHONPATH", "")
                                                     .split(os.pathsep) if p])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def python_tool_version(module, dist, env):
    """(version, directory) of an importable module, or None."""
    proc = subprocess.run([sys.executable, "-c", VERSION_SCRIPT, module, dist], env=env,
                          capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or len(lines) != 2:
        return None
    return lines[0], lines[1]


def dataset(cache_root):
    key = f"coco_synth_v{gen_coco_bench.VERSION}"
    out_dir = os.path.join(cache_root, key)
    gt, dt = os.path.join(out_dir, "gt.json"), os.path.join(out_dir, "dt.json")
    if not (os.path.exists(gt) and os.path.exists(dt)):
        print(f"generating {out_dir} (once) ...", flush=True)
        gen_coco_bench.write(out_dir)
    return gt, dt


def read_stats(path):
    with open(path) as f:
        return json.load(f)["stats"]


def main():
    setdet_bin = os.environ.get("SETDET_BIN", "build/bin/setdet")
    if not os.access(setdet_bin, os.X_OK):
        print(f"bench_eval: SETDET_BIN={setdet_bin} is not an executable; build setdet first")
        return 1
    repeats = int(os.environ.get("SETDET_BENCH_REPEATS", "3"))
    pycoco_repeats = int(os.environ.get("SETDET_BENCH_PYCOCO_REPEATS", "1"))
    cache = os.environ.get("SETDET_BENCH_CACHE", os.path.join(tempfile.gettempdir(),
                                                              "setdet_bench"))
    gt, dt = dataset(cache)
    with open(gt) as f:
        gt_json = json.load(f)
    with open(dt) as f:
        num_dets = len(json.load(f))
    num_crowd = sum(a["iscrowd"] for a in gt_json["annotations"])
    print(f"data: {len(gt_json['images'])} images, {len(gt_json['categories'])} categories, "
          f"{len(gt_json['annotations'])} ground truth ({num_crowd} crowd), {num_dets} "
          f"detections ({dt})")
    del gt_json

    env = child_env()
    ncores = os.cpu_count() or 1
    tools = [  # name, version, command (out.json appended), repeats
        (f"setdet eval ({ncores} threads)", "this build",
         [setdet_bin, "--threads", str(ncores), "eval", "--gt", gt, "--dt", dt, "--json"],
         repeats),
        ("setdet eval (1 thread)", "this build",
         [setdet_bin, "--threads", "1", "eval", "--gt", gt, "--dt", dt, "--json"], repeats),
    ]
    missing, locations = [], []
    for name, module, dist, script, n in (
            ("pycocotools", "pycocotools.cocoeval", "pycocotools", PYCOCOTOOLS_SCRIPT,
             pycoco_repeats),
            ("faster-coco-eval", "faster_coco_eval", "faster-coco-eval",
             FASTER_COCO_EVAL_SCRIPT, repeats)):
        found = python_tool_version(module, dist, env)
        if found is None:
            missing.append(name)
            continue
        if name == "pycocotools":  # the version lives on the package, not on .cocoeval
            found = python_tool_version("pycocotools", dist, env) or found
        version, location = found
        locations.append(f"{name}: {location}")
        tools.append((name, version, [sys.executable, "-c", script, gt, dt], n))

    results = []
    with tempfile.TemporaryDirectory() as work:
        for name, version, cmd, n in tools:
            out = os.path.join(work, "stats.json")
            results.append((name, version) + measure(name, cmd + [out], out, n, env, work,
                                                     read_stats))

    by_name = {r[0]: r for r in results}
    reference = by_name.get("pycocotools")
    ref_stats = reference[4] if reference and reference[4] is not None else None
    base = results[0][2]
    print()
    print("| tool | version | median s | vs setdet | peak MiB | max abs diff of the 12 stats "
          "vs pycocotools |")
    print("|---|---|---:|---:|---:|---:|")
    for name, version, seconds, peak, stats, error in results:
        if error is not None:
            print(f"| {name} | {version} | {error.splitlines()[0]} | | | |")
            continue
        ratio = f"{seconds / base:.2f}x" if base else "n/a"
        if ref_stats is None:
            diff = "n/a (no pycocotools)"
        else:
            diff = f"{max(abs(a - b) for a, b in zip(stats, ref_stats)):.3g}"
        print(f"| {name} | {version} | {seconds:.3f} | {ratio} | {peak:.0f} | {diff} |")
    for name in missing:
        print(f"| {name} | n/a (not installed) | | | | |")
    if locations:
        print()
        print("imported from: " + "; ".join(locations))
    if ref_stats is not None:
        print()
        print("pycocotools stats: " + ", ".join(f"{n}={v:.4f}" for n, v in
                                                zip(STAT_NAMES, ref_stats)))
    for name, version, seconds, peak, stats, error in results:
        if error is not None:
            print(f"\n{name} failed:\n{error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
