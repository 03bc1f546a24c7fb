"""Relation Networks' costs: the relation modules' share of the 2fc+RM box head's time, and the
training throughput of 2fc against 2fc+RM (and with the learned duplicate removal trained end to
end) on the `make demo-relation` models and data.

Run as /usr/bin/python3 bench/bench_relation.py with SETDET_BIN=build/bin/setdet (scripts/bench.sh
does this). The data is the `make demo` dataset (scripts/demo_data.sh generates it when missing).

* box head: `setdet bench --mode roi-head` times the 2fc+RM head (fc6, RM, fc7, RM) on N RoIs of one
  image against the same head without relation modules (medians over --repeats);
* training: `setdet train` for --iters iterations of each config with the same seed, batch and
  threads; images/s is the median over the log intervals after the first (warm-up).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import process_timing

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BIN = os.environ.get("SETDET_BIN", os.path.join(ROOT, "build", "bin", "setdet"))
CONFIGS = [
    ("2fc", "configs/relation/faster_rcnn_r18h_fpn64_256_demo.yaml"),
    ("2fc+RM", "configs/relation/relation_rm_r18h_fpn64_256_demo.yaml"),
    ("2fc+RM + learned NMS (e2e)", "configs/relation/relation_rm_e2e_r18h_fpn64_256_demo.yaml"),
]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return r.stdout


def train_images_per_second(config, args, work):
    return process_timing.train_images_per_second(
        [BIN, "--threads", str(args.threads), "train", config, "--work-dir", work,
         "--set", f"runner.max_iters={args.iters}", "--set", "runner.log_interval=5",
         "--set", "runner.max_seconds=100000", "--set", "data.val=_delete_"], ROOT, work)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rois", default="300,1000")
    args = parser.parse_args()
    subprocess.run(["bash", "scripts/demo_data.sh", BIN], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    load_before = os.getloadavg()[0]

    head_rows = []
    for n in [int(x) for x in args.rois.split(",") if x]:
        out = run([BIN, "--threads", str(args.threads), "bench", "--mode", "roi-head", "--config",
                   CONFIGS[1][1], "--rois", str(n), "--repeats", str(args.repeats)])
        head_rows.append(json.loads(out.strip().splitlines()[-1]))

    train_rows = []
    with tempfile.TemporaryDirectory(prefix="setdet_bench_relation_") as tmp:
        for name, config in CONFIGS:
            train_rows.append((name, train_images_per_second(
                config, args, os.path.join(tmp, name.replace(" ", "_").replace("+", "p")))))

    print(f"{args.threads} threads; demo models (half-width ResNet-18, FPN 64, 2fc head of "
          f"{head_rows[0]['fc_dim'] if head_rows else '?'} channels, OHEM 128 of 300 RoIs, batch "
          f"8); 1-min load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print()
    print("| box head, RoIs of one image | 2fc+RM (s) | 2fc (s) | relation modules' share |")
    print("|---:|---:|---:|---:|")
    for r in head_rows:
        print(f"| {r['rois']} | {r['head_median_s']:.4f} | "
              f"{r['head_without_relations_median_s']:.4f} | {100 * r['relation_share']:.1f}% |")
    print()
    base = train_rows[0][1]
    print(f"| training ({args.iters} iterations, median over log intervals) | images/s | "
          "vs 2fc |")
    print("|---|---:|---:|")
    for name, rate in train_rows:
        print(f"| {name} | {rate:.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
