"""End to end through the CLI: `data synth` -> `train` (a few iterations of the demo FCOS) ->
`test` -> `infer`, and the errors `infer` gives for bad input."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

BIN = os.environ.get("SETDET_BIN", "setdet")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CONFIG = os.path.join(ROOT, "configs", "fcos", "fcos_r18h_fpn64_256_demo.yaml")


def run(*args):
    return subprocess.run([BIN, "--threads", "2", *args], capture_output=True, text=True,
                          timeout=900)


class TrainInferCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="setdet_cli_train_")
        cls.data = os.path.join(cls.tmp, "data")
        r = run("data", "synth", "--out", cls.data, "--num-train", "8", "--num-val", "4",
                "--seed", "3", "--size", "128")
        assert r.returncode == 0, r.stderr
        cls.overrides = [
            "--set", f"data.train.dataset.data_root={cls.data}/",
            "--set", f"data.val.dataset.data_root={cls.data}/",
            "--set", "data.train.batch_size=4", "--set", "data.val.batch_size=4",
            "--set", "runner.max_seconds=100000", "--set", "runner.max_iters=4",
            "--set", "runner.log_interval=1",
            "--set", "lr_schedule={type: Cosine, warmup: linear, warmup_iters: 2}",
        ]
        cls.work = os.path.join(cls.tmp, "work")
        cls.train = run("train", DEMO_CONFIG, "--work-dir", cls.work, *cls.overrides)
        cls.ckpt = os.path.join(cls.work, "latest.pt")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_train_writes_checkpoint_and_metrics(self):
        self.assertEqual(self.train.returncode, 0, self.train.stderr[-3000:])
        self.assertTrue(os.path.isfile(self.ckpt))
        with open(os.path.join(self.work, "metrics.json")) as f:
            metrics = json.load(f)
        self.assertEqual(metrics["iters"], 4)
        for key in ("AP", "AP50", "AP75"):
            self.assertGreaterEqual(metrics[key], 0.0)
            self.assertLessEqual(metrics[key], 1.0)

    def test_test_writes_results_and_prints_summary(self):
        out = os.path.join(self.tmp, "dets.json")
        r = run("test", DEMO_CONFIG, self.ckpt, "--out", out, *self.overrides)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
                      r.stdout)
        with open(out) as f:
            dets = json.load(f)
        self.assertTrue(all({"image_id", "category_id", "bbox", "score"} <= d.keys() for d in dets))

    def test_test_evaluates_duplicate_removal_choices_side_by_side(self):
        stats = os.path.join(self.tmp, "dedup.json")
        r = run("test", DEMO_CONFIG, self.ckpt, "--json", stats, "--dedup", "nms",
                "--dedup", "soft_nms:method=gaussian,sigma=0.5", "--dedup", "none",
                "--set", "model.test_cfg.score_thr=0.0", *self.overrides)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("soft_nms(gaussian, sigma 0.5", r.stdout)
        with open(stats) as f:
            m = json.load(f)
        for tag in ("nms", "soft_nms_method_gaussian_sigma_0.5", "none"):
            self.assertGreaterEqual(m["AP_" + tag], 0.0)
        # The configured test_cfg.nms is NMS 0.6: the "nms" variant reproduces it exactly.
        self.assertEqual(m["AP_nms"], m["AP"])
        # Without duplicate removal every candidate up to max_per_img (100) survives: score_thr 0
        # leaves thousands per image, so each of the 4 val images gets exactly 100.
        rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()
                if line.startswith("none ")}
        self.assertEqual(int(rows["none"][6]), 400)

        bad = run("test", DEMO_CONFIG, self.ckpt, "--dedup", "fancy_nms", *self.overrides)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("--dedup 'fancy_nms'", bad.stderr)
        self.assertIn("unknown duplicate removal 'fancy_nms'", bad.stderr)
        learned = run("test", DEMO_CONFIG, self.ckpt, "--dedup", "learned", *self.overrides)
        self.assertNotEqual(learned.returncode, 0)
        self.assertIn("learned", learned.stderr)

    def test_infer_draws_pngs_and_writes_json(self):
        images = [os.path.join(self.data, "val", f"00000{i}.jpg") for i in range(2)]
        out_dir = os.path.join(self.tmp, "vis")
        out_json = os.path.join(self.tmp, "infer.json")
        r = run("infer", "--config", DEMO_CONFIG, "--checkpoint", self.ckpt, "--out-dir", out_dir,
                "--json", out_json, "--score-thr", "0.0", *self.overrides, *images)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out_json) as f:
            entries = json.load(f)
        self.assertEqual([e["file"] for e in entries], images)
        names = {"circle", "ellipse", "square", "triangle", "star", "cross", "ring", "hexagon"}
        for entry in entries:
            scores = [d["score"] for d in entry["detections"]]
            self.assertEqual(scores, sorted(scores, reverse=True))
            self.assertLessEqual(len(scores), 100)
            for d in entry["detections"]:
                x1, y1, x2, y2 = d["box_xyxy"]
                self.assertTrue(0 <= x1 <= x2 <= 128 and 0 <= y1 <= y2 <= 128, d)
                self.assertIn(d["label"], range(8))
                self.assertIn(d["name"], names)
        for i in range(2):
            with open(os.path.join(out_dir, f"00000{i}.png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_test_stores_the_f1_threshold_and_infer_draws_from_it(self):
        own = os.path.join(self.tmp, "f1")
        os.makedirs(own)
        ckpt = os.path.join(own, "model.pt")
        shutil.copy(self.ckpt, ckpt)
        stats = os.path.join(own, "stats.json")
        r = run("test", DEMO_CONFIG, ckpt, "--json", stats, *self.overrides)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("F1-best score threshold", r.stdout)
        with open(os.path.join(own, "model.score_threshold.json")) as f:
            stored = json.load(f)
        with open(stats) as f:
            self.assertEqual(json.load(f)["score_threshold_f1"], stored["score_threshold"])
        self.assertEqual(stored["split"], "val")
        self.assertEqual(stored["images"], 4)
        self.assertEqual(stored["iou_threshold"], 0.5)
        tp, fp, n = stored["true_positives"], stored["false_positives"], stored["ground_truth"]
        self.assertGreater(n, 0)
        self.assertAlmostEqual(stored["f1"], 2 * tp / (tp + fp + n))

        images = [os.path.join(self.data, "val", f"00000{i}.jpg") for i in range(2)]
        sheet = os.path.join(own, "sheet.png")
        gt = os.path.join(self.data, "annotations", "instances_val.json")
        r = run("infer", "--config", DEMO_CONFIG, "--checkpoint", ckpt, "--sheet", sheet, "--gt",
                gt, *self.overrides, *images)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"drawing scores >= {stored['score_threshold']:.3f} (F1-best", r.stdout)
        # 128 px images drawn 4x (the largest enlargement), ground truth | detections, 2 rows
        with open(sheet, "rb") as f:
            head = f.read(24)
        self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", head[16:24])
        self.assertEqual(width, 512 + 8 + 512)
        self.assertGreater(height, 2 * 512)

        # a checkpoint written again no longer matches the stored threshold
        os.utime(ckpt, ns=(0, os.stat(ckpt).st_mtime_ns + 1000))
        r = run("infer", "--config", DEMO_CONFIG, "--checkpoint", ckpt, "--sheet", sheet,
                *self.overrides, images[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("drawing scores >= 0.300 (the default)", r.stdout)
        other = os.path.join(own, "other.json")
        with open(other, "w") as f:
            json.dump({"images": [{"id": 1, "file_name": "elsewhere.jpg", "width": 128,
                                   "height": 128}], "annotations": [],
                       "categories": [{"id": 1, "name": "circle"}]}, f)
        r = run("infer", "--config", DEMO_CONFIG, "--checkpoint", ckpt, "--sheet", sheet, "--gt",
                other, *self.overrides, images[0])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no image with file name '000000.jpg'", r.stderr)

    def test_infer_errors_name_the_problem(self):
        r = run("infer", "--config", DEMO_CONFIG, "--checkpoint", self.ckpt, *self.overrides,
                os.path.join(self.data, "val", "000000.jpg"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("give --out-dir DIR, --json OUT.json and/or --sheet SHEET.png", r.stderr)
        broken = os.path.join(self.tmp, "broken.jpg")
        with open(broken, "wb") as f:
            f.write(b"not an image")
        r = run("infer", "--config", DEMO_CONFIG, "--checkpoint", self.ckpt, "--json",
                os.path.join(self.tmp, "x.json"), *self.overrides, broken)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"{broken}: cannot decode image", r.stderr)


if __name__ == "__main__":
    unittest.main()
