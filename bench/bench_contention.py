"""Training beside a CPU-bound neighbour: images/s of the `make demo` model (2 threads) on a quiet
machine, then with one process spinning on a core, without and with the ThreadGovernorHook.

Run as /usr/bin/python3 bench/bench_contention.py with SETDET_BIN=build/bin/setdet (scripts/bench.sh
does this). The data is the `make demo` dataset (scripts/demo_data.sh generates it when missing).

Each run is `setdet train` for --iters iterations (float32, same seed and batch); images/s is the
median over the log intervals after the first (warm-up). The neighbour is a Python busy loop started
before training and killed after it. Expected on 2 cores: with a neighbour, about half the quiet
rate (one core is left); without the governor, two threads wait for the shared core at every
parallel region and fall much further.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import process_timing

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BIN = os.environ.get("SETDET_BIN", os.path.join(ROOT, "build", "bin", "setdet"))
CONFIG = "configs/fcos/fcos_r18h_fpn64_256_demo.yaml"
SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def train_rate(work, iters, threads, governor):
    cmd = [BIN, "--threads", str(threads), "train", CONFIG, "--work-dir", work,
           "--set", f"runner.max_iters={iters}", "--set", "runner.max_seconds=100000",
           "--set", "runner.max_epochs=_delete_", "--set", "runner.log_interval=5",
           "--set", "runner.autocast=off", "--set", "data.val=_delete_",
           "--set", "lr_schedule.by_time=false"]
    cmd += ["--set", "hooks=[{type: ThreadGovernorHook, interval_seconds: 2}]" if governor
            else "hooks=[]"]
    return process_timing.train_images_per_second(cmd, ROOT, work)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    subprocess.run(["bash", "scripts/demo_data.sh", BIN], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="setdet_bench_contention_") as tmp:
        for name, neighbour, governor in [("quiet", False, False), ("quiet", False, True),
                                          ("neighbour", True, False), ("neighbour", True, True)]:
            spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if neighbour else None
            try:
                work = os.path.join(tmp, f"{name}_{int(governor)}")
                rows.append((name, governor, train_rate(work, args.iters, args.threads, governor)))
            finally:
                if spinner:
                    spinner.kill()
                    spinner.wait()
    quiet = rows[0][2]
    print(f"training the demo FCOS, {args.threads} threads, {args.iters} iterations of 8 images")
    print(f"{'machine':<12}{'governor':<10}{'images/s':>10}{'vs quiet':>10}")
    for name, governor, rate in rows:
        print(f"{name:<12}{'on' if governor else 'off':<10}{rate:>10.1f}{rate / quiet:>9.2f}x")


if __name__ == "__main__":
    main()
