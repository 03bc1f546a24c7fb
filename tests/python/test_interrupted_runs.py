"""Interrupted runs: `kill -9` during training then `--resume` ends with the losses and weights of
an uninterrupted run; `kill -9` while a checkpoint or a results file is being written leaves the
previous file intact (every writer goes through a temporary file and a rename); a full disk (a
file-size limit) is a clear error that keeps the last good checkpoint; a non-finite loss stops
training naming the iteration, the loss term and that checkpoint (or skips the batch).

The kills mid-write come from an LD_PRELOAD shim (tests/support/kill_during_write.cpp, in
SETDET_KILL_SHIM) that raises SIGKILL after writing half a buffer to setdet's temporary file, or
just before the rename."""
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from cli_testing import SETDET_BIN, make_tiny_setup, run_setdet

SHIM = os.environ.get("SETDET_KILL_SHIM", "")
ITERS = 40


def log_records(work):
    """Every train record of log.jsonl, in file order."""
    with open(os.path.join(work, "log.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["mode"] == "train"]


def losses(record):
    return {k: v for k, v in record.items() if k.startswith("loss")}


def weights(checkpoint, directory):
    out = os.path.join(directory, "weights.json")
    r = run_setdet("inspect-weights", checkpoint, "--json", out)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        return [(t["name"], t["shape"], t["crc32"]) for t in json.load(f)]


def run_killed(args, file, mode, at=1, env=None):
    """`setdet ARGS` under the shim, killed at the `at`-th write (or rename) of `file`."""
    environment = dict(os.environ, LD_PRELOAD=SHIM, SETDET_KILL_FILE=file, SETDET_KILL_MODE=mode,
                       SETDET_KILL_AT=str(at), **(env or {}))
    return subprocess.run([SETDET_BIN, "--threads", "1", *args], capture_output=True, text=True,
                          timeout=600, env=environment)


@unittest.skipUnless(os.path.isfile(SHIM), "SETDET_KILL_SHIM is not built")
class InterruptedRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="setdet_interrupted_")
        tiny = make_tiny_setup(cls.dir)
        # iteration-keyed cosine schedule, latest.pt after every iteration, no evaluation
        cls.config = os.path.join(cls.dir, "resumable.yaml")
        with open(cls.config, "w") as f:
            f.write("_base_: tiny.yaml\n"
                    "data: {val: _delete_}\n"
                    "lr_schedule: {type: Cosine, warmup: linear, warmup_iters: 5}\n"
                    f"runner: {{max_iters: {ITERS}}}\n"
                    "hooks: [{type: CheckpointHook, interval_iters: 1}]\n")
        cls.reference = os.path.join(cls.dir, "reference")
        r = run_setdet("train", cls.config, "--work-dir", cls.reference)
        assert r.returncode == 0, r.stderr
        cls.reference_records = log_records(cls.reference)
        assert [rec["iter"] for rec in cls.reference_records] == list(range(1, ITERS + 1))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def work(self, name):
        return os.path.join(self.dir, name)

    def assert_same_as_reference(self, work):
        """Every logged iteration (those repeated after a resume too) has the reference's losses,
        and the final weights are the reference's, bit for bit."""
        records = log_records(work)
        self.assertEqual({r["iter"] for r in records}, set(range(1, ITERS + 1)))
        for r in records:
            self.assertEqual(losses(r), losses(self.reference_records[r["iter"] - 1]),
                             f"iteration {r['iter']}")
        self.assertEqual(weights(os.path.join(work, "latest.pt"), work),
                         weights(os.path.join(self.reference, "latest.pt"), self.reference))
        with open(os.path.join(work, "metrics.json")) as f:
            self.assertEqual(json.load(f)["iters"], ITERS)

    def resume(self, work):
        r = run_setdet("train", self.config, "--work-dir", work, "--resume")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_kill_9_during_training_then_resume(self):
        work = self.work("killed")
        proc = subprocess.Popen([SETDET_BIN, "--threads", "1", "train", self.config,
                                 "--work-dir", work], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        log = os.path.join(work, "log.jsonl")
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if os.path.exists(log):
                with open(log) as f:
                    if sum(1 for _ in f) >= 10:
                        break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        self.assertEqual(proc.wait(), -signal.SIGKILL, "training ended before it was killed")
        done = len(log_records(work))
        self.assertLess(done, ITERS)
        r = self.resume(work)
        self.assertIn("resumed from " + os.path.join(work, "latest.pt"), r.stderr)
        self.assert_same_as_reference(work)

    def test_kill_9_while_writing_a_checkpoint_keeps_the_previous_one(self):
        work = self.work("killed_in_write")
        r = run_killed(["train", self.config, "--work-dir", work], "latest.pt", "write", at=3)
        self.assertEqual(r.returncode, -signal.SIGKILL, r.stderr)
        partial = [f for f in os.listdir(work) if f.startswith("latest.pt.tmp.")]
        self.assertEqual(len(partial), 1, os.listdir(work))
        self.assertLess(os.path.getsize(os.path.join(work, partial[0])),
                        os.path.getsize(os.path.join(work, "latest.pt")))
        r = self.resume(work)  # the checkpoint of iteration 2 is whole
        self.assertRegex(r.stderr, "resumed from " + os.path.join(work, "latest.pt") +
                         r" at epoch \d+, iteration 2 ")
        self.assert_same_as_reference(work)

    def test_kill_9_before_the_rename_keeps_the_previous_checkpoint(self):
        work = self.work("killed_at_rename")
        r = run_killed(["train", self.config, "--work-dir", work], "latest.pt", "rename", at=2)
        self.assertEqual(r.returncode, -signal.SIGKILL, r.stderr)
        r = self.resume(work)
        self.assertIn("at epoch 1, iteration 1 ", r.stderr)
        self.assert_same_as_reference(work)

    def test_every_results_writer_leaves_the_previous_file_on_kill_9(self):
        work = self.reference
        ckpt = os.path.join(work, "latest.pt")
        val = os.path.join(self.dir, "data", "val", "000000.jpg")
        gt = os.path.join(self.dir, "data", "annotations", "instances_val.json")
        tiny = os.path.join(self.dir, "tiny.yaml")
        out = self.work("results")
        os.makedirs(out, exist_ok=True)
        dets = os.path.join(out, "dets.json")
        with open(dets, "w") as f:
            json.dump([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}], f)
        cases = [
            ("test --out", ["test", tiny, ckpt, "--out", os.path.join(out, "t.json")], "t.json"),
            ("test --json", ["test", tiny, ckpt, "--json", os.path.join(out, "m.json")], "m.json"),
            ("infer --json", ["infer", "--config", tiny, "--checkpoint", ckpt, "--json",
                              os.path.join(out, "i.json"), val], "i.json"),
            ("infer --out-dir", ["infer", "--config", tiny, "--checkpoint", ckpt, "--out-dir",
                                 out, val], "000000.png"),
            ("convert", ["convert", "--config", tiny, ckpt, os.path.join(out, "c.pt")], "c.pt"),
            ("inspect-weights --json", ["inspect-weights", ckpt, "--json",
                                        os.path.join(out, "w.json")], "w.json"),
            ("eval --json", ["eval", "--gt", gt, "--dt", dets, "--json",
                             os.path.join(out, "e.json")], "e.json"),
            ("eval --plot", ["eval", "--gt", gt, "--dt", dets, "--plot",
                             os.path.join(out, "pr.png")], "pr.png"),
            ("dedup --out", ["dedup", "--dt", dets, "--method", "nms", "--out",
                             os.path.join(out, "d.json")], "d.json"),
            ("data synth", ["data", "synth", "--out", out, "--num-train", "1", "--num-val", "1",
                            "--size", "64"], "instances_train.json"),
            ("train metrics.json", ["train", tiny, "--work-dir", out], "metrics.json"),
            ("train config.yaml", ["train", tiny, "--work-dir", out], "config.yaml"),
        ]
        os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
        for what, args, name in cases:
            target = os.path.join(out, "annotations" if name.startswith("instances") else "", name)
            with open(target, "w") as f:
                f.write("the previous file\n")
            with self.subTest(writer=what):
                r = run_killed(args, name, "write")
                self.assertEqual(r.returncode, -signal.SIGKILL,
                                 f"{what} was not killed while writing {name} (does it write "
                                 f"through a temporary file?)\n{r.stderr[-2000:]}")
                with open(target) as f:
                    self.assertEqual(f.read(), "the previous file\n")

    def test_full_disk_is_an_error_naming_the_file_and_keeps_the_last_checkpoint(self):
        work = self.work("full_disk")
        r = run_setdet("train", self.config, "--work-dir", work, "--set", "runner.max_iters=2")
        self.assertEqual(r.returncode, 0, r.stderr)
        latest = os.path.join(work, "latest.pt")
        with open(latest, "rb") as f:
            before = f.read()
        limit = 64 * 1024  # less than a checkpoint, more than the logs

        def small_files():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        self.assertGreater(len(before), limit)
        r = subprocess.run([SETDET_BIN, "--threads", "1", "train", self.config, "--work-dir", work,
                            "--resume", "--set", "runner.max_iters=4"], capture_output=True,
                           text=True, timeout=600, preexec_fn=small_files)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"setdet: error: {latest}: cannot write temporary file {latest}.tmp.",
                      r.stderr)
        self.assertIn("(File too large); training stopped at iteration 3, the last good "
                      f"checkpoint is {latest} (iteration 2)", r.stderr)
        with open(latest, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual([f for f in os.listdir(work) if ".tmp." in f], [])

    def test_non_finite_loss_names_iteration_term_and_checkpoint(self):
        # lr 1e30: the first step sends every weight to +-inf, the second loss is NaN
        work = self.work("nan")
        blow_up = ["--set", "optimizer.lr=1e30", "--set", "runner.max_iters=6"]
        r = run_setdet("train", self.config, "--work-dir", work, *blow_up)
        self.assertEqual(r.returncode, 1, r.stderr)
        latest = os.path.join(work, "latest.pt")
        self.assertRegex(r.stderr, r"setdet: error: non-finite loss at iteration 2 \(epoch 1\): "
                                   r"loss_\w+ is -?nan \(loss_bbox=.*\); training stopped, the "
                                   "last good checkpoint is " + latest + r" \(iteration 1\)")
        work = self.work("nan_skip")
        r = run_setdet("train", self.config, "--work-dir", work, *blow_up, "--set",
                       "runner.nonfinite=skip", "--set", "runner.nonfinite_max_skips=2")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.count("batch skipped without an optimiser step"), 2)
        self.assertIn("non-finite loss at iteration 4 (epoch 2)", r.stderr)
        self.assertIn("after 2 skipped batches (runner.nonfinite_max_skips); training stopped",
                      r.stderr)


if __name__ == "__main__":
    unittest.main()
