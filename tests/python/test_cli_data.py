"""`setdet data synth`, `setdet data synth-vrd` and `setdet data bench` through the CLI binary
(SETDET_BIN)."""
import csv
import filecmp
import json
import os
import shutil
import subprocess
import tempfile
import unittest

BIN = os.environ.get("SETDET_BIN", "setdet")


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=600)


class DataCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="setdet_cli_data_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def synth(self, name, seed, *extra):
        out = os.path.join(self.tmp, name)
        r = run("data", "synth", "--out", out, "--num-train", "6", "--num-val", "3",
                "--seed", str(seed), "--size", "128", *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out

    def test_synth_writes_a_coco_dataset(self):
        out = self.synth("a", 5)
        for split, count in (("train", 6), ("val", 3)):
            with open(os.path.join(out, "annotations", f"instances_{split}.json")) as f:
                ds = json.load(f)
            self.assertEqual(len(ds["images"]), count)
            self.assertEqual([c["name"] for c in ds["categories"]],
                             ["circle", "ellipse", "square", "triangle", "star", "cross", "ring",
                              "hexagon"])
            per_image = {im["id"]: 0 for im in ds["images"]}
            for ann in ds["annotations"]:
                x, y, w, h = ann["bbox"]
                self.assertGreaterEqual(min(x, y), 0)
                self.assertLessEqual(x + w, 128)
                self.assertLessEqual(y + h, 128)
                self.assertGreaterEqual(min(w, h), 12)
                self.assertLessEqual(max(w, h), 80)  # 5/8 of the image size
                self.assertGreater(ann["area"], 0)
                self.assertLessEqual(ann["area"], w * h)
                per_image[ann["image_id"]] += 1
            for n in per_image.values():
                self.assertGreaterEqual(n, 5)
                self.assertLessEqual(n, 25)
            for im in ds["images"]:
                self.assertEqual((im["width"], im["height"]), (128, 128))
                self.assertTrue(os.path.isfile(os.path.join(out, split, im["file_name"])))

    def test_synth_is_deterministic_per_seed(self):
        a, b, c = self.synth("d1", 9), self.synth("d2", 9), self.synth("d3", 10)
        for rel in ("annotations/instances_train.json", "annotations/instances_val.json",
                    "train/000000.jpg", "val/000002.jpg"):
            self.assertTrue(filecmp.cmp(os.path.join(a, rel), os.path.join(b, rel), shallow=False),
                            rel)
            self.assertFalse(filecmp.cmp(os.path.join(a, rel), os.path.join(c, rel),
                                         shallow=False), rel)

    def test_threads_option_before_or_after_the_subcommand(self):
        # The global --threads may follow the subcommand too; both give the same data.
        a = self.synth("t1", 3, "--threads", "1")
        out = os.path.join(self.tmp, "t2")
        r = run("--threads", "1", "data", "synth", "--out", out, "--num-train", "6", "--num-val",
                "3", "--seed", "3", "--size", "128")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(filecmp.cmp(os.path.join(a, "train", "000001.jpg"),
                                    os.path.join(out, "train", "000001.jpg"), shallow=False))
        r = run("data", "synth", "--out", os.path.join(self.tmp, "t3"), "--threads", "-2")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--threads", r.stderr + r.stdout)

    def test_png_format(self):
        out = self.synth("png", 1, "--format", "png")
        self.assertTrue(os.path.isfile(os.path.join(out, "train", "000005.png")))

    def test_bad_arguments_are_rejected(self):
        r = run("data", "synth", "--out", os.path.join(self.tmp, "x"), "--format", "gif")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--format", r.stderr + r.stdout)
        r = run("data", "synth", "--num-train", "3")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--out", r.stderr + r.stdout)
        r = run("data", "synth", "--out", os.path.join(self.tmp, "y"), "--size", "16")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--size", r.stderr + r.stdout)

    def test_synth_vrd_writes_open_images_csvs_that_score_one_against_themselves(self):
        out = os.path.join(self.tmp, "vrd")
        r = run("data", "synth-vrd", "--out", out, "--num-train", "4", "--num-val", "2",
                "--num-test", "3", "--seed", "2", "--size", "128")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("wrote 9 images (4 train, 2 val, 3 test)", r.stdout)
        ann = os.path.join(out, "annotations")
        with open(os.path.join(ann, "class_descriptions.csv")) as f:
            names = [row["LabelName"] for row in csv.DictReader(f)]
        self.assertEqual(names, ["circle", "square", "triangle", "star", "hexagon", "cross",
                                 "striped", "dotted", "checkered"])
        for split, count in (("train", 4), ("val", 2), ("test", 3)):
            with open(os.path.join(ann, f"instances_{split}.json")) as f:
                coco = json.load(f)
            self.assertEqual(len(coco["images"]), count)
            files = {im["file_name"] for im in coco["images"]}
            self.assertEqual(files, {f"{split}_{i:06d}.jpg" for i in range(count)})
            for name in files:
                self.assertTrue(os.path.isfile(os.path.join(out, split, name)))
            gt = os.path.join(ann, f"vrd_{split}.csv")
            with open(gt) as f:
                rows = list(csv.DictReader(f))
            self.assertGreater(len(rows), 0)
            for row in rows:
                self.assertIn(row["ImageID"] + ".jpg", files)
                if row["RelationshipLabel"] == "is":  # box 2 = box 1, LabelName2 the attribute
                    self.assertIn(row["LabelName2"], ("striped", "dotted", "checkered"))
                    for c in ("XMin", "XMax", "YMin", "YMax"):
                        self.assertEqual(row[c + "1"], row[c + "2"])
            # the ground truth as detections with score 1 scores 1
            dt = os.path.join(self.tmp, f"dt_{split}.csv")
            with open(gt) as f, open(dt, "w") as g:
                lines = f.read().splitlines()
                g.write(lines[0] + ",Score\n" + "".join(line + ",1\n" for line in lines[1:]))
            metrics = os.path.join(self.tmp, f"metrics_{split}.json")
            r = run("vrd", "eval", "--gt", gt, "--labels", os.path.join(ann, f"labels_{split}.csv"),
                    "--dt", dt, "--json", metrics)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(metrics) as f:
                m = json.load(f)
            for key in ("mAP_relationship", "recall50_relationship", "mAP_phrase", "score"):
                self.assertEqual(m[key], 1.0, key)
            self.assertEqual(m["num_kept_detections"], len(rows))

    def test_bench_runs_and_reports_missing_images_by_path(self):
        out = self.synth("bench", 3)
        args = ("data", "bench", "--ann-file", os.path.join(out, "annotations/instances_train.json"),
                "--img-dir", os.path.join(out, "train"), "--batch-size", "2", "--workers", "2",
                "--batches", "5")
        r = run(*args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("batches/s", r.stdout)
        missing = os.path.join(out, "train", "000004.jpg")
        os.remove(missing)
        r = run(*args)
        self.assertEqual(r.returncode, 1)
        self.assertIn(missing + ": no such file", r.stderr)


if __name__ == "__main__":
    unittest.main()
