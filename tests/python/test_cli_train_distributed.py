"""Data-parallel training through the CLI on loopback (Gloo):

- 2 processes x batch 4 give the per-iteration losses (within 1e-3 relative) and the final weights
  (within 1e-4) of 1 process x batch 8: float32, an iteration-keyed schedule, 20 iterations, for
  FCOS with SyncBN in the backbone and for FCOS_PSS;
- a checkpoint written by a 2-process run resumes in 1 process and continues with the losses the
  2-process run has;
- a worker killed under `--nproc` makes the other exit with an error naming it, and the launcher
  exits with the killed worker's code; a stopped (hung) worker started the torchrun way makes the
  other exit with an error naming it after the (shortened) timeout.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import torch

BIN = os.environ.get("SETDET_BIN", "setdet")
ITERS = 20

CONFIG = """
model:
  type: {detector}
  num_classes: 8
  backbone: {{type: ResNet, depth: 18, base_channels: 8, norm: SyncBN, out_indices: [1, 2, 3]}}
  neck: {{type: FPN, out_channels: 16, num_outs: 5, extra_input: p5}}
  head: {{type: FCOSHead, channels: 16, num_convs: 1, gn_groups: 4}}
  assigner: {{type: FCOSAssigner, regress_ranges: [[-1, 32], [32, 64], [64, 128], [128, 256], [256, 100000000]]}}
{extra_model}
data:
  train:
    batch_size: 8
    num_workers: 1
    dataset:
      type: CocoDataset
      data_root: {data}/
      ann_file: annotations/instances_train.json
      img_dir: train/
      pipeline:
        - {{type: Resize, scale: [96, 96], keep_ratio: true}}
        - {{type: RandomFlip, prob: 0.5}}
        - {{type: Normalize, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], to_rgb: true}}
        - {{type: Pad, size_divisor: 32}}
  val:
    batch_size: 2
    num_workers: 1
    dataset:
      type: CocoDataset
      data_root: {data}/
      ann_file: annotations/instances_val.json
      img_dir: val/
      filter_empty: false
      pipeline:
        - {{type: Resize, scale: [96, 96], keep_ratio: true}}
        - {{type: Normalize, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], to_rgb: true}}
        - {{type: Pad, size_divisor: 32}}
optimizer: {{type: SGD, lr: 0.002, momentum: 0.9, weight_decay: 0.0001}}
lr_schedule: {{type: Step, steps: [15], by_epoch: false, warmup: linear, warmup_iters: 5}}
runner: {{max_iters: {iters}, seed: 0, log_interval: 1, eval_interval: 0, checkpoint_interval: 0, autocast: off}}
hooks: [{{type: LoggerHook, progress_bar: false}}]
"""

PSS_MODEL = """  pss_head: {num_convs: 1, channels: 16, gn_groups: 4}
  pss_train_cfg: {alpha: 0.8, matcher: hungarian, stop_gradient: true, rank_num_neg: 20}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_losses(work):
    """{iteration: {loss name: value}} from log.jsonl (log_interval 1)."""
    out = {}
    with open(os.path.join(work, "log.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec["mode"] == "train":
                out[rec["iter"]] = {k: v for k, v in rec.items() if k.startswith("loss")}
    return out


def checkpoint_tensors(work):
    """(parameters, buffers) of work/latest.pt by name (the checkpoint is a TorchScript archive)."""
    ckpt = torch.jit.load(os.path.join(work, "latest.pt"))
    return (dict(getattr(ckpt, "model/params").named_parameters()),
            dict(getattr(ckpt, "model/buffers").named_buffers()))


def worker_pids(launcher_pid):
    """{rank: pid} of a `--nproc` launcher's workers (their RANK variable)."""
    pids = {}
    with open(f"/proc/{launcher_pid}/task/{launcher_pid}/children") as f:
        children = [int(p) for p in f.read().split()]
    for pid in children:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        pids[int(env[b"RANK"])] = pid
    return pids


def wait_for_iteration(work, iteration, proc, limit=300):
    """Waits until rank 0 has logged `iteration` (or the process has ended)."""
    path = os.path.join(work, "log.jsonl")
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        try:
            if os.path.exists(path) and max(train_losses(work), default=0) >= iteration:
                return
        except json.JSONDecodeError:  # a line being written
            pass
        time.sleep(0.2)
    raise AssertionError(f"training did not reach iteration {iteration}")


class DistributedTrainingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="setdet_dist_")
        cls.data = os.path.join(cls.tmp, "data")
        r = subprocess.run([BIN, "data", "synth", "--out", cls.data, "--num-train", "32",
                            "--num-val", "4", "--seed", "3", "--size", "96"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cls.configs = {}
        for name, detector, extra in (("fcos", "FCOS", ""), ("pss", "FCOS_PSS", PSS_MODEL)):
            path = os.path.join(cls.tmp, name + ".yaml")
            with open(path, "w") as f:
                f.write(CONFIG.format(detector=detector, extra_model=extra, data=cls.data,
                                      iters=ITERS))
            cls.configs[name] = path
        cls.runs = {}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, name, work, *args, nproc=1, ok=True):
        cmd = [BIN, "train", self.configs[name], "--work-dir", os.path.join(self.tmp, work),
               *args]
        if nproc > 1:
            cmd += ["--nproc", str(nproc), "--set", f"data.train.batch_size={8 // nproc}"]
        else:
            cmd += ["--threads", "2"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if ok:
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        return os.path.join(self.tmp, work)

    def run_pair(self, name):
        """(1 process x 8, 2 processes x 4) work dirs, trained once per class."""
        if name not in self.runs:
            self.runs[name] = (self.train(name, name + "_1x8"),
                               self.train(name, name + "_2x4", nproc=2))
        return self.runs[name]

    def assert_same_training(self, one, two, iterations):
        a, b = train_losses(one), train_losses(two)
        self.assertEqual(sorted(a), list(iterations))
        self.assertEqual(sorted(b), list(iterations))
        for it in iterations:
            self.assertEqual(a[it].keys(), b[it].keys())
            for key, value in a[it].items():
                self.assertLessEqual(abs(b[it][key] - value), 1e-3 * abs(value),
                                     f"iteration {it} {key}: {value} vs {b[it][key]}")

    def assert_same_weights(self, one, two):
        """Parameters within 1e-4. BatchNorm statistics are averages of activations of those
        (not quite equal) weights: within 1e-3 of their largest magnitude (one process trained
        with 1 and with 2 threads differs by as much: 8e-4 on a running variance of ~2)."""
        (pa, ba), (pb, bb) = checkpoint_tensors(one), checkpoint_tensors(two)
        self.assertEqual(pa.keys(), pb.keys())
        self.assertEqual(ba.keys(), bb.keys())
        for name, t in pa.items():
            self.assertLessEqual((t - pb[name]).abs().max().item(), 1e-4, name)
        for name, t in ba.items():
            scale = max(t.double().abs().max().item(), 1.0)
            diff = (t.double() - bb[name].double()).abs().max().item()
            self.assertLessEqual(diff, 1e-3 * scale, name)

    def check_pair(self, name):
        one, two = self.run_pair(name)
        self.assert_same_training(one, two, range(1, ITERS + 1))
        self.assert_same_weights(one, two)
        for work, world in ((one, 1), (two, 2)):
            with open(os.path.join(work, "metrics.json")) as f:
                m = json.load(f)
            self.assertEqual((m["iters"], m["images"], m["world_size"]), (ITERS, 8 * ITERS, world))

    def test_fcos_with_sync_bn_two_processes_match_one(self):
        self.check_pair("fcos")

    def test_fcos_pss_two_processes_match_one(self):
        self.check_pair("pss")

    def test_two_process_checkpoint_resumes_in_one_process(self):
        _, two = self.run_pair("fcos")
        half = self.train("fcos", "fcos_resume", "--set", f"runner.max_iters={ITERS // 2}",
                          nproc=2)
        self.train("fcos", "fcos_resume", "--resume")
        # the resumed run logs iterations 11-20 after the 2-process run's 1-10
        self.assert_same_training(half, two, range(1, ITERS + 1))
        self.assert_same_weights(half, two)

    def test_killed_worker_is_named_and_its_code_passed_on(self):
        work = os.path.join(self.tmp, "killed")
        proc = subprocess.Popen(
            [BIN, "train", self.configs["fcos"], "--work-dir", work, "--nproc", "2",
             "--set", "data.train.batch_size=4", "--set", "runner.max_iters=100000",
             "--set", "distributed.timeout=10"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_iteration(work, 2, proc)
            os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        self.assertEqual(proc.returncode, 128 + signal.SIGKILL, err[-2000:])
        self.assertRegex(err, r"rank 1 \(pid \d+\) was killed by signal 9")
        self.assertIn("setdet: error: rank 0: rank 1 stopped responding", err)
        self.assertRegex(err, r"rank 0 \(pid \d+\) exited with code 1")

    def test_stopped_worker_is_named_after_the_timeout(self):
        """Two workers started as torchrun starts them; rank 1 is stopped (SIGSTOP)."""
        work = os.path.join(self.tmp, "stopped")
        port = free_port()
        procs = []
        for rank in (0, 1):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                       LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            procs.append(subprocess.Popen(
                [BIN, "train", self.configs["fcos"], "--work-dir", work,
                 "--set", "data.train.batch_size=4", "--set", "runner.max_iters=100000",
                 "--set", "distributed.timeout=4"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        try:
            wait_for_iteration(work, 2, procs[0])
            os.kill(procs[1].pid, signal.SIGSTOP)
            _, err = procs[0].communicate(timeout=60)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.assertEqual(procs[0].returncode, 1, err[-2000:])
        self.assertIn("setdet: error: rank 0: rank 1 stopped responding", err)
        self.assertIn("on this rank:", err)


if __name__ == "__main__":
    unittest.main()
