"""`setdet eval`: the pycocotools-format summary, --json, --per-class, --plot, --class-agnostic,
--iou-thrs, --max-dets, --area-rngs and argument errors. Expected values are computed by hand from
pycocotools' COCOeval definitions (cocoeval.py: evaluate / accumulate / summarize)."""
import json
import os
import random
import re
import struct
import unittest
import zlib

from cli_testing import CliTestCase, write_json

# pycocotools' summarize() line format (cocoeval.py, _summarize: iStr)
SUMMARY_FORMAT = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
SUMMARY_RE = re.compile(
    r"^ Average (Precision|Recall) +\((AP|AR)\) @\[ IoU=(\S+)\s*\| area=\s*(\w+) \| "
    r"maxDets=\s*(\d+) \] = (-?\d+\.\d{3})$")


def summary_layout(iou="0.50:0.95", max_dets=(1, 10, 100)):
    """(title, type, iou, area, maxDets) of the 12 lines, pycocotools' _summarizeDets order."""
    ap, ar = ("Average Precision", "(AP)"), ("Average Recall", "(AR)")
    m = max_dets[2]
    return [
        (*ap, iou, "all", 100), (*ap, "0.50", "all", m), (*ap, "0.75", "all", m),
        (*ap, iou, "small", m), (*ap, iou, "medium", m), (*ap, iou, "large", m),
        (*ar, iou, "all", max_dets[0]), (*ar, iou, "all", max_dets[1]), (*ar, iou, "all", m),
        (*ar, iou, "small", m), (*ar, iou, "medium", m), (*ar, iou, "large", m),
    ]


def make_gt(images, annotations, categories):
    anns = []
    for i, a in enumerate(annotations):
        a = dict(a)
        a.setdefault("id", i + 1)
        a.setdefault("area", a["bbox"][2] * a["bbox"][3])
        a.setdefault("iscrowd", 0)
        anns.append(a)
    return {"images": images, "annotations": anns, "categories": categories}


def random_dataset(seed, num_images=20, num_categories=3):
    rng = random.Random(seed)
    images = [{"id": i + 1, "file_name": f"{i + 1}.jpg", "width": 640, "height": 480}
              for i in range(num_images)]
    categories = [{"id": c + 1, "name": f"class_{c + 1}", "supercategory": "thing"}
                  for c in range(num_categories)]
    anns, dets = [], []
    for img in images:
        for _ in range(rng.randint(0, 6)):
            w, h = rng.uniform(4, 300), rng.uniform(4, 300)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            cat = rng.randint(1, num_categories)
            anns.append({"image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h],
                         "iscrowd": int(rng.random() < 0.05)})
            for _ in range(rng.randint(0, 3)):
                j = [rng.gauss(0, 0.1 * w), rng.gauss(0, 0.1 * h), rng.gauss(0, 0.1 * w),
                     rng.gauss(0, 0.1 * h)]
                dets.append({"image_id": img["id"],
                             "category_id": cat if rng.random() < 0.9 else rng.randint(1, num_categories),
                             "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])],
                             "score": rng.random()})
        for _ in range(rng.randint(0, 4)):
            w, h = rng.uniform(4, 200), rng.uniform(4, 200)
            dets.append({"image_id": img["id"], "category_id": rng.randint(1, num_categories),
                         "bbox": [rng.uniform(0, 440), rng.uniform(0, 280), w, h],
                         "score": rng.random()})
    return make_gt(images, anns, categories), dets


def png_size(data):
    """(width, height) from a PNG's IHDR chunk; checks signature and the IHDR CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    crc = struct.unpack(">I", data[29:33])[0]
    assert crc == zlib.crc32(data[12:29]) & 0xFFFFFFFF, "IHDR CRC mismatch"
    return struct.unpack(">II", data[16:24])


class EvalCliTest(CliTestCase):
    def evaluate(self, gt, dets, *extra):
        gt_path = write_json(self.path("gt.json"), gt)
        dt_path = write_json(self.path("dt.json"), dets)
        out = self.path("stats.json")
        proc = self.run_cli("eval", "--gt", gt_path, "--dt", dt_path, "--json", out, *extra)
        with open(out) as f:
            return proc, json.load(f)

    def assert_stats(self, got, want):
        self.assertEqual(len(got), len(want))
        for g, w in zip(got, want):
            if w == -1:
                self.assertEqual(g, -1)
            else:
                self.assertAlmostEqual(g, w, places=12)

    def check_summary(self, stdout, stats, layout):
        lines = stdout.splitlines()[:12]
        self.assertEqual(len(lines), 12, stdout)
        for line, value, (title, kind, iou, area, max_dets) in zip(lines, stats, layout):
            self.assertRegex(line, SUMMARY_RE)
            self.assertEqual(line, SUMMARY_FORMAT.format(title, kind, iou, area, max_dets, value))

    def test_summary_format_and_json_stats(self):
        for seed in range(3):
            gt, dets = random_dataset(seed)
            proc, result = self.evaluate(gt, dets)
            stats = result["stats"]
            self.assertEqual(len(stats), 12)
            self.check_summary(proc.stdout, stats, summary_layout())
            names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
                     "ARm", "ARl"]
            for name, value in zip(names, stats):
                self.assertEqual(result[name], value)
                self.assertTrue(value == -1 or 0.0 <= value <= 1.0, (name, value))
            self.assertGreater(stats[0], 0.0)
            # AR is non-decreasing in maxDets
            self.assertLessEqual(stats[6], stats[7])
            self.assertLessEqual(stats[7], stats[8])

    def test_hand_computed_precision_recall(self):
        # Two GT; detections by score: hit g1, miss, hit g2 -> precision [1, 1/2, 2/3] at recall
        # [1/2, 1/2, 1]; monotone [1, 2/3, 2/3]; 51 recall thresholds <= 0.5 sample 1, the other
        # 50 sample 2/3.
        gt = make_gt([{"id": 7, "width": 640, "height": 480}],
                     [{"image_id": 7, "category_id": 3, "bbox": [10, 10, 200, 200]},
                      {"image_id": 7, "category_id": 3, "bbox": [300, 200, 150, 150]}],
                     [{"id": 3, "name": "box"}])
        dets = [{"image_id": 7, "category_id": 3, "bbox": [10, 10, 200, 200], "score": 0.9},
                {"image_id": 7, "category_id": 3, "bbox": [400, 20, 100, 100], "score": 0.8},
                {"image_id": 7, "category_id": 3, "bbox": [300, 200, 150, 150], "score": 0.7}]
        proc, result = self.evaluate(gt, dets)
        eps = 2.220446049250313e-16  # np.spacing(1), added to tp + fp by pycocotools
        ap = (51 * 1 / (1 + eps) + 50 * 2 / (3 + eps)) / 101
        self.assert_stats(result["stats"], [ap, ap, ap, -1, -1, ap, 0.5, 1.0, 1.0, -1, -1, 1.0])
        self.check_summary(proc.stdout, result["stats"], summary_layout())

    def test_per_class_table(self):
        gt = make_gt([{"id": 1, "width": 640, "height": 480}],
                     [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100]},
                      {"image_id": 1, "category_id": 2, "bbox": [300, 300, 100, 100]}],
                     [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"},
                      {"id": 5, "name": "zebra"}])
        dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100], "score": 0.9},
                {"image_id": 1, "category_id": 2, "bbox": [100, 300, 100, 100], "score": 0.8}]
        proc, result = self.evaluate(gt, dets, "--per-class")
        rows = {r["name"]: r for r in result["per_class"]}
        self.assertEqual([r["category_id"] for r in result["per_class"]], [1, 2, 5])
        for key in ("AP", "AP50", "AP75"):
            self.assertAlmostEqual(rows["cat"][key], 1.0, places=12)
        self.assertEqual((rows["dog"]["AP"], rows["dog"]["AP50"], rows["dog"]["AP75"]),
                         (0.0, 0.0, 0.0))
        self.assertEqual(rows["zebra"]["AP"], -1)  # no ground truth
        self.assertAlmostEqual(result["stats"][0], 0.5, places=12)
        table = proc.stdout.splitlines()[12:]
        header = [line for line in table if line.startswith("category")]
        self.assertEqual(len(header), 1, proc.stdout)
        self.assertEqual(header[0].split(), ["category", "id", "AP", "AP50", "AP75"])
        body = {line.split()[0]: line.split()[1:] for line in table
                if line.strip() and not line.startswith("category")}
        self.assertEqual(body["cat"], ["1", "1.000", "1.000", "1.000"])
        self.assertEqual(body["dog"], ["2", "0.000", "0.000", "0.000"])
        self.assertEqual(body["zebra"], ["5", "n/a", "n/a", "n/a"])

    def test_class_agnostic(self):
        # The only detection has the right box and the wrong category: AP 0 per class, 1 pooled.
        gt = make_gt([{"id": 1, "width": 640, "height": 480}],
                     [{"image_id": 1, "category_id": 1, "bbox": [50, 50, 120, 80]}],
                     [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        dets = [{"image_id": 1, "category_id": 2, "bbox": [50, 50, 120, 80], "score": 0.6}]
        _, per_class = self.evaluate(gt, dets)
        _, agnostic = self.evaluate(gt, dets, "--class-agnostic")
        self.assertEqual(per_class["stats"][0], 0.0)
        self.assertEqual(per_class["stats"][8], 0.0)
        self.assertAlmostEqual(agnostic["stats"][0], 1.0, places=12)
        self.assertEqual(agnostic["stats"][8], 1.0)
        self.assertFalse(agnostic["params"]["use_cats"])
        proc = self.run_cli("eval", "--gt", self.path("gt.json"), "--dt", self.path("dt.json"),
                            "--class-agnostic", "--per-class", ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("setdet: error:", proc.stderr)
        self.assertIn("--per-class", proc.stderr)

    def test_custom_iou_thresholds(self):
        # IoU(det, gt) = 60x100 / 100x100 = 0.6: a match at 0.5, a miss at 0.7.
        gt = make_gt([{"id": 1, "width": 640, "height": 480}],
                     [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100]}],
                     [{"id": 1, "name": "a"}])
        dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 60], "score": 0.6}]
        proc, result = self.evaluate(gt, dets, "--iou-thrs", "0.5,0.7")
        self.assertEqual(result["params"]["iou_thrs"], [0.5, 0.7])
        stats = result["stats"]
        self.assertAlmostEqual(stats[0], 0.5, places=12)
        self.assertAlmostEqual(stats[1], 1.0, places=12)
        self.assertEqual(stats[2], -1)  # 0.75 is not among the thresholds (pycocotools: -1)
        self.assertAlmostEqual(stats[8], 0.5, places=12)
        self.check_summary(proc.stdout, stats, summary_layout(iou="0.50:0.70"))
        _, strict = self.evaluate(gt, dets, "--iou-thrs", "0.7")
        self.assertEqual(strict["stats"][0], 0.0)

    def test_custom_max_dets(self):
        # Three GT, three exact detections with decreasing scores: AR@k = min(k, 3) / 3.
        boxes = [[0, 0, 100, 100], [200, 0, 100, 100], [0, 200, 100, 100]]
        gt = make_gt([{"id": 1, "width": 640, "height": 480}],
                     [{"image_id": 1, "category_id": 1, "bbox": b} for b in boxes],
                     [{"id": 1, "name": "a"}])
        dets = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 0.9 - 0.1 * i}
                for i, b in enumerate(boxes)]
        proc, result = self.evaluate(gt, dets, "--max-dets", "1", "2", "5")
        stats = result["stats"]
        self.assertEqual(result["params"]["max_dets"], [1, 2, 5])
        # pycocotools' stats[0] asks for maxDets=100, absent here -> -1
        self.assertEqual(stats[0], -1)
        self.assertAlmostEqual(stats[1], 1.0, places=12)
        self.assertAlmostEqual(stats[6], 1 / 3, places=12)
        self.assertAlmostEqual(stats[7], 2 / 3, places=12)
        self.assertEqual(stats[8], 1.0)
        self.check_summary(proc.stdout, stats, summary_layout(max_dets=(1, 2, 5)))
        bad = self.run_cli("eval", "--gt", self.path("gt.json"), "--dt", self.path("dt.json"),
                           "--max-dets", "1,0,10", ok=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("--max-dets", bad.stderr)

    def test_area_ranges(self):
        # a 30x30 box: "small" under the default ranges, "medium" under the custom ones
        gt = make_gt([{"id": 1, "width": 640, "height": 480}],
                     [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30]}],
                     [{"id": 1, "name": "a"}])
        dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30], "score": 0.5}]
        _, default = self.evaluate(gt, dets)
        self.assert_stats(default["stats"][3:6], [1.0, -1, -1])
        _, custom = self.evaluate(gt, dets, "--area-rngs", "all=0:1e10", "small=0:500",
                                  "medium=500:1000", "large=1000:1e10")
        self.assert_stats(custom["stats"][3:6], [-1, 1.0, -1])
        bad = self.run_cli("eval", "--gt", self.path("gt.json"), "--dt", self.path("dt.json"),
                           "--area-rngs", "small=0", ok=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("--area-rngs", bad.stderr)

    def test_plot_png(self):
        gt, dets = random_dataset(11)
        plot = self.path("pr.png")
        _, result = self.evaluate(gt, dets, "--plot", plot)
        with open(plot, "rb") as f:
            data = f.read()
        self.assertEqual(png_size(data), (960, 720))
        self.assertGreater(len(data), 5000)
        self.assertEqual(data[-12:-4], b"\x00\x00\x00\x00IEND")
        # decode and check the coloured curves are there (torchvision's PNG decoder)
        import torch
        import torchvision.io
        img = torchvision.io.decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self.assertEqual(tuple(img.shape), (3, 720, 960))
        chroma = img.int().max(0).values - img.int().min(0).values
        self.assertGreater(int((chroma > 60).sum()), 2000)  # coloured curve / legend pixels
        self.assertGreater(int((img.int().sum(0) < 100).sum()), 1000)  # black axes and text
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["dt.json", "gt.json", "pr.png", "stats.json"])  # no temporary left

    def test_cat_and_img_ids(self):
        gt, dets = random_dataset(5, num_images=10, num_categories=4)
        _, all_ids = self.evaluate(gt, dets)
        _, subset = self.evaluate(gt, dets, "--cat-ids", "1,2", "--img-ids", "1,2,3,4,5")
        self.assertNotEqual(all_ids["stats"], subset["stats"])
        bad = self.run_cli("eval", "--gt", self.path("gt.json"), "--dt", self.path("dt.json"),
                           "--cat-ids", "99", ok=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("--cat-ids", bad.stderr)
        self.assertIn("99", bad.stderr)

    def test_errors(self):
        gt, dets = random_dataset(3)
        gt_path = write_json(self.path("gt.json"), gt)
        dt_path = write_json(self.path("dt.json"), dets)
        missing = self.run_cli("eval", "--gt", self.path("nope.json"), "--dt", dt_path, ok=False)
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("--gt", missing.stderr)
        self.assertIn("nope.json", missing.stderr)
        stray = dets + [{"image_id": 123456, "category_id": 1, "bbox": [0, 0, 5, 5],
                         "score": 0.5}]
        stray_path = write_json(self.path("stray.json"), stray)
        proc = self.run_cli("eval", "--gt", gt_path, "--dt", stray_path, ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("setdet: error:", proc.stderr)
        self.assertIn("123456", proc.stderr)
        with open(self.path("broken.json"), "w") as f:
            f.write('[{"image_id": 1, "category_id": ')
        proc = self.run_cli("eval", "--gt", gt_path, "--dt", self.path("broken.json"), ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("broken.json", proc.stderr)
        proc = self.run_cli("eval", "--gt", gt_path, "--dt", dt_path, "--iou-thrs", "1.5",
                            ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("--iou-thrs", proc.stderr)


if __name__ == "__main__":
    unittest.main()
