"""Shared helpers for the Python tests that drive the setdet CLI binary (SETDET_BIN)."""
import json
import os
import subprocess
import tempfile
import unittest

SETDET_BIN = os.environ.get("SETDET_BIN", "setdet")

# An FCOS small enough to train an iteration in ~10 ms on one thread (64 px `data synth` images).
TINY_FCOS = """
model:
  type: FCOS
  num_classes: 8
  backbone: {{type: ResNet, depth: 18, base_channels: 8, frozen_bn: false, out_indices: [1, 2, 3]}}
  neck: {{type: FPN, out_channels: 16, num_outs: 5, extra_input: p5}}
  head: {{type: FCOSHead, channels: 16, num_convs: 1, gn_groups: 4}}
  test_cfg: {{score_thr: 0.05, pre_nms_top_k: 100, nms_thr: 0.6, max_per_img: 20}}
data:
  train:
    batch_size: 4
    num_workers: 1
    dataset:
      type: CocoDataset
      data_root: {data}/
      ann_file: annotations/instances_train.json
      img_dir: train/
      pipeline: &pipeline
        - {{type: Resize, scale: [64, 64], keep_ratio: true}}
        - {{type: Normalize, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375]}}
        - {{type: Pad, size_divisor: 32}}
  val:
    batch_size: 4
    num_workers: 0
    dataset:
      type: CocoDataset
      data_root: {data}/
      ann_file: annotations/instances_val.json
      img_dir: val/
      filter_empty: false
      pipeline: *pipeline
optimizer: {{type: SGD, lr: 0.01}}
runner: {{max_iters: 1, seed: 0, log_interval: 1, eval_interval: 0}}
"""


def run_setdet(*args, **kwargs):
    """`setdet --threads 1 ARGS` (one thread: the tiny model runs fastest so, and the same)."""
    return subprocess.run([SETDET_BIN, "--threads", "1", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def make_tiny_setup(directory, num_train=8, num_val=4):
    """Synthetic 64 px data in DIRECTORY/data and DIRECTORY/tiny.yaml training TINY_FCOS on it;
    returns the config's path."""
    data = os.path.join(directory, "data")
    r = run_setdet("data", "synth", "--out", data, "--num-train", str(num_train), "--num-val",
                   str(num_val), "--seed", "5", "--size", "64")
    assert r.returncode == 0, r.stderr
    config = os.path.join(directory, "tiny.yaml")
    with open(config, "w") as f:
        f.write(TINY_FCOS.format(data=data))
    return config


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


class CliTestCase(unittest.TestCase):
    """A test case with a fresh temporary directory per test and a `setdet` runner."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_cli(self, *args, ok=True):
        """Runs `setdet ARGS`; with ok=True a non-zero exit fails the test with its stderr."""
        proc = subprocess.run([SETDET_BIN, *args], capture_output=True, text=True)
        if ok:
            self.assertEqual(proc.returncode, 0, f"setdet {' '.join(args)} failed:\n{proc.stderr}")
        return proc
