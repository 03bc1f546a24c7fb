"""Timing whole child processes for the side-by-side benchmarks (bench_eval.py,
bench_vrd_eval.py): wall time, peak resident memory (wait4's ru_maxrss) and the results file each
run writes; and training throughput from a `setdet train` work directory (bench_relation.py,
bench_contention.py); the median of an in-process call (bench_infer.py, bench_deta.py)."""
import json
import os
import statistics
import subprocess
import sys
import time


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of fn() over `repeats` calls after `warmup` untimed ones (in process)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_json(cmd, env=None, timeout=3600):
    """Runs cmd (a setdet subcommand printing JSON); returns its last stdout line parsed."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_child(cmd, env, log_path):
    """Runs cmd to completion; returns (wall seconds, peak RSS MiB, exit code)."""
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    return seconds, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status)  # KiB on Linux


def measure(name, cmd, out, repeats, env, work, parse):
    """Runs cmd `repeats` times; each run must write the file `out`, read by parse(out) and then
    removed. Returns (median seconds, max peak MiB, parse() of the last run, None), or
    (None, None, None, error text) when a run fails."""
    times, peaks, result = [], [], None
    for r in range(repeats):
        log = os.path.join(work, f"run_{len(os.listdir(work))}.log")
        seconds, peak, code = run_child(cmd, env, log)
        if code != 0 or not os.path.exists(out):
            with open(log) as f:
                return None, None, None, f"failed (exit {code}): {f.read()[-800:].strip()}"
        result = parse(out)
        os.remove(out)
        times.append(seconds)
        peaks.append(peak)
        print(f"  {name}: run {r + 1}/{repeats}: {seconds:.2f} s, {peak:.0f} MiB", flush=True)
    return statistics.median(times), max(peaks), result, None


def train_images_per_second(cmd, cwd, work):
    """Runs a `setdet train ... --work-dir work` command line; returns the median images/s over its
    log intervals after the first (warm-up), read from work/log.jsonl."""
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    rates = []
    with open(os.path.join(work, "log.jsonl")) as f:
        for line in f:
            entry = json.loads(line)
            if "images_per_second" in entry:
                rates.append(entry["images_per_second"])
    if len(rates) < 2:
        raise RuntimeError(f"too few log intervals ({len(rates)}) in {work}/log.jsonl")
    return statistics.median(rates[1:])


def setdet_bin(bench):
    """The setdet CLI named by SETDET_BIN (scripts/bench.sh sets it); exits naming `bench` when it
    is not a file."""
    path = os.environ.get("SETDET_BIN")
    if not path or not os.path.isfile(path):
        sys.exit(f"{bench}: SETDET_BIN={path!r} is not a file (build the setdet CLI)")
    return path
