"""Data-parallel training on one machine, and the gradient all-reduce it pays per iteration.

1. Training throughput of the `make demo` model (configs/fcos/fcos_r18h_fpn64_256_demo.yaml, its
   precision `runner.autocast: auto`, and float32) at the demo's global batch of 8: one process
   with 2 threads (batch 8) against 2 processes with 1 thread each (`--nproc 2`, batch 4 each),
   on the same synthetic images. Median wall time of an iteration after warm-up (rank 0's, which
   includes waiting for the other rank); images/s = 8 / median.
2. The gradient all-reduce of one iteration of that model, alone: `setdet bench-allreduce`
   (c10d's Gloo from C++, the reducer's buckets) beside PyTorch's torch.distributed (Gloo from
   Python, the same bucket sizes, all launched then awaited), 2 processes over loopback.
3. A bandwidth model for machines joined by a network: a ring all-reduce moves 2 (W - 1) / W
   times the gradient bytes through each rank's link, so one iteration's all-reduce takes about
   that many bytes over the slower of the link and this host's measured all-reduce rate.

Run as /usr/bin/python3 bench/bench_distributed.py with SETDET_BIN=build/bin/setdet
(scripts/bench.sh does this). Options: --iters, --warmup, --repeats, --keep DIR.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

import process_timing

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "fcos",
                      "fcos_r18h_fpn64_256_demo.yaml")
GLOBAL_BATCH = 8
LINKS_GBIT = (1, 10, 25, 100)
WORLDS = (2, 4, 8, 16)


def setdet_bin():
    return process_timing.setdet_bin("bench_distributed")


def run(cmd, what):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_distributed: {what} failed:\n{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc


def train_median(work, data, name, nproc, iters, warmup, autocast):
    out = os.path.join(work, name)
    cmd = [setdet_bin(), "train", CONFIG, "--work-dir", out,
           "--set", f"data.train.dataset.data_root={data}/",
           "--set", f"data.train.batch_size={GLOBAL_BATCH // nproc}",
           "--set", f"runner.autocast={autocast}",
           "--set", "runner.max_seconds=0", "--set", f"runner.max_iters={iters}",
           "--set", "lr_schedule.by_time=false", "--set", "runner.log_interval=1",
           "--set", "runner.checkpoint_interval=0", "--set", "runner.eval_interval=0",
           "--set", f"data.val.dataset.data_root={data}/"]
    cmd += ["--nproc", str(nproc)] if nproc > 1 else ["--threads", "2"]
    run(cmd, f"setdet train ({name})")
    times = []
    with open(os.path.join(out, "log.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("mode") == "train" and rec["iter"] > warmup:
                times.append(rec["time"])
    with open(os.path.join(out, "metrics.json")) as f:
        threads = json.load(f)["threads"]
    return statistics.median(times), threads


TORCH_CHILD = r"""
import json, statistics, sys, time
import torch, torch.distributed as dist
buckets, repeats, warmup = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="env://")
tensors = [torch.ones(n) for n in buckets]
times = []
for i in range(warmup + repeats):
    dist.barrier()
    start = time.perf_counter()
    works = [dist.all_reduce(t, async_op=True) for t in tensors]
    for w in works:
        w.wait()
    if i >= warmup:
        times.append(time.perf_counter() - start)
if dist.get_rank() == 0:
    print(json.dumps({"median_s": statistics.median(times), "torch": torch.__version__}))
dist.destroy_process_group()
"""


def torch_all_reduce(buckets, repeats, warmup):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
        procs.append(subprocess.Popen([sys.executable, "-c", TORCH_CHILD, json.dumps(buckets),
                                       str(repeats), str(warmup)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            sys.exit(f"bench_distributed: torch.distributed all-reduce failed:\n{err[-3000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=20, help="training iterations per run")
    parser.add_argument("--warmup", type=int, default=5, help="iterations not timed")
    parser.add_argument("--repeats", type=int, default=30, help="timed all-reduces")
    parser.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    args = parser.parse_args()
    if args.iters <= args.warmup:
        sys.exit("bench_distributed: --iters must exceed --warmup")

    work = args.keep or tempfile.mkdtemp(prefix="setdet_bench_dist_")
    os.makedirs(work, exist_ok=True)
    try:
        data = os.path.join(work, "data")
        run([setdet_bin(), "data", "synth", "--out", data, "--num-train", "64", "--num-val", "8",
             "--seed", "0"], "setdet data synth")
        rows = []
        for autocast in ("auto", "off"):
            one, one_threads = train_median(work, data, f"1x8_{autocast}", 1, args.iters,
                                            args.warmup, autocast)
            two, two_threads = train_median(work, data, f"2x4_{autocast}", 2, args.iters,
                                            args.warmup, autocast)
            rows.append((autocast, one, one_threads, two, two_threads))
        ours = json.loads(run([setdet_bin(), "bench-allreduce", "--config", CONFIG, "--nproc", "2",
                               "--repeats", str(args.repeats), "--warmup", "3"],
                              "setdet bench-allreduce").stdout.strip().splitlines()[-1])
        peer = torch_all_reduce(ours["buckets"], args.repeats, 3)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"Data-parallel FCOS training, `make demo` model, 256 px, global batch {GLOBAL_BATCH}, "
          f"median of {args.iters - args.warmup} iterations, this machine ({os.cpu_count()} cores)")
    print()
    print("| autocast | 1 process x 2 threads (batch 8) | 2 processes x 1 thread (batch 4 each) "
          "| 2 x 1 / 1 x 2 |")
    print("|---|---:|---:|---:|")
    for autocast, one, one_threads, two, two_threads in rows:
        print(f"| {autocast} | {one:.3f} s/it, {GLOBAL_BATCH / one:.1f} img/s "
              f"({one_threads} threads) | {two:.3f} s/it, {GLOBAL_BATCH / two:.1f} img/s "
              f"({two_threads} thread each) | {one / two:.2f}x |")
    print()
    mb = ours["bytes"] / 1e6
    print(f"Gradient all-reduce of one iteration: {ours['parameters']:,} float32 parameters = "
          f"{mb:.1f} MB in {len(ours['buckets'])} buckets ({ours['buckets']} elements), "
          f"2 processes, loopback, median of {args.repeats}")
    print()
    print("| all-reduce | median ms | effective GB/s (bytes / time) | vs setdet |")
    print("|---|---:|---:|---:|")
    print(f"| setdet (C++, c10d ProcessGroupGloo) | {ours['median_s'] * 1e3:.2f} | "
          f"{ours['bytes'] / ours['median_s'] / 1e9:.2f} | 1.00x |")
    print(f"| PyTorch {peer['torch']} torch.distributed (Python, Gloo) | "
          f"{peer['median_s'] * 1e3:.2f} | {ours['bytes'] / peer['median_s'] / 1e9:.2f} | "
          f"{peer['median_s'] / ours['median_s']:.2f}x |")
    print()
    host_rate = ours["bytes"] / ours["median_s"]  # bytes/s this host sustains through Gloo
    compute = min(r[1] for r in rows)  # seconds per iteration of one process at this batch
    print(f"Bandwidth model (ring all-reduce: 2 (W-1)/W x {mb:.1f} MB through each link, at the "
          f"slower of the link and this host's {host_rate / 1e9:.2f} GB/s; one machine computes "
          f"an iteration in {compute:.3f} s), no overlap with the backward pass assumed:")
    print()
    print("| link | " + " | ".join(f"W = {w}: all-reduce ms / scaling efficiency" for w in WORLDS)
          + " |")
    print("|---|" + "---:|" * len(WORLDS))
    for gbit in LINKS_GBIT:
        rate = min(gbit * 1e9 / 8, host_rate)
        cells = []
        for w in WORLDS:
            t = 2 * (w - 1) / w * ours["bytes"] / rate
            cells.append(f"{t * 1e3:.0f} ms / {compute / (compute + t) * 100:.0f}%")
        print(f"| {gbit} Gbit/s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
