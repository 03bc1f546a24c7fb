"""`setdet dedup`: NMS against torchvision.ops.batched_nms per image, Soft-NMS / Matrix NMS
decay (hand-computed from mmcv.ops.soft_nms's and PaddlePaddle's matrix_nms definitions), weighted
box fusion (hand-computed from ensemble_boxes.weighted_boxes_fusion's definition) and argument
errors."""
import json
import math
import os
import random
import unittest
from collections import defaultdict

import torch
import torchvision

from cli_testing import CliTestCase, write_json


def clustered_detections(seed, num_images=25, num_categories=4):
    """Detections jittered around a few centres per image, so NMS has work to do."""
    rng = random.Random(seed)
    dets = []
    for image_id in range(1, num_images + 1):
        for _ in range(rng.randint(0, 5)):
            cat = rng.randint(1, num_categories)
            w, h = rng.uniform(10, 200), rng.uniform(10, 200)
            x, y = rng.uniform(0, 500), rng.uniform(0, 400)
            for _ in range(rng.randint(1, 12)):
                dets.append({"image_id": image_id, "category_id": cat,
                             "bbox": [x + rng.gauss(0, 0.15 * w), y + rng.gauss(0, 0.15 * h),
                                      w * rng.uniform(0.7, 1.3), h * rng.uniform(0.7, 1.3)],
                             "score": rng.random()})
        for _ in range(rng.randint(0, 4)):  # isolated boxes
            dets.append({"image_id": image_id, "category_id": rng.randint(1, num_categories),
                         "bbox": [rng.uniform(0, 600), rng.uniform(0, 400), rng.uniform(1, 50),
                                  rng.uniform(1, 50)], "score": rng.random()})
    rng.shuffle(dets)
    return dets


def by_image(dets):
    groups = defaultdict(list)
    for d in dets:
        groups[d["image_id"]].append(d)
    return groups


def as_tuple(d):
    return (d["image_id"], d["category_id"], tuple(d["bbox"]), d["score"])


def iou_xywh(a, b):
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(ix, 0) * max(iy, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


class DedupCliTest(CliTestCase):
    def dedup(self, dets, *args, name="dt.json"):
        dt = write_json(self.path(name), dets)
        out = self.path("out.json")
        self.run_cli("dedup", "--dt", dt, "--out", out, *args)
        with open(out) as f:
            return json.load(f)

    def torchvision_nms(self, dets, iou_thr, score_thr=None, max_dets=None):
        expected = []
        for image_id, group in sorted(by_image(dets).items()):
            if score_thr is not None:
                group = [d for d in group if d["score"] >= score_thr]
            if not group:
                continue
            xywh = torch.tensor([d["bbox"] for d in group], dtype=torch.float64)
            boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
            scores = torch.tensor([d["score"] for d in group], dtype=torch.float64)
            labels = torch.tensor([d["category_id"] for d in group], dtype=torch.int64)
            keep = torchvision.ops.batched_nms(boxes, scores, labels, iou_thr).tolist()
            if max_dets is not None:
                keep = keep[:max_dets]
            expected += [as_tuple(group[i]) for i in keep]
        return expected

    def test_nms_matches_torchvision_batched_nms(self):
        for seed in range(4):
            dets = clustered_detections(seed)
            for thr in (0.3, 0.5, 0.7):
                got = [as_tuple(d) for d in self.dedup(dets, "--method", "nms", "--iou-thr",
                                                       str(thr))]
                self.assertEqual(got, self.torchvision_nms(dets, thr), (seed, thr))
                self.assertLess(len(got), len(dets))

    def test_nms_default_threshold_score_threshold_and_max_dets(self):
        dets = clustered_detections(7)
        got = [as_tuple(d) for d in self.dedup(dets, "--method", "nms")]
        self.assertEqual(got, self.torchvision_nms(dets, 0.5))
        got = [as_tuple(d) for d in self.dedup(dets, "--method", "nms", "--score-thr", "0.3",
                                               "--max-dets", "3")]
        self.assertEqual(got, self.torchvision_nms(dets, 0.5, score_thr=0.3, max_dets=3))

    def test_nms_concatenates_several_files(self):
        dets = clustered_detections(9)
        half = len(dets) // 2
        first = write_json(self.path("a.json"), dets[:half])
        second = write_json(self.path("b.json"), dets[half:])
        out = self.path("out.json")
        self.run_cli("dedup", "--dt", first, "--dt", second, "--method", "nms", "--out", out)
        with open(out) as f:
            got = [as_tuple(d) for d in json.load(f)]
        self.assertEqual(got, self.torchvision_nms(dets, 0.5))

    # A and B overlap with IoU 90x100 / 110x100 = 9/11; C is far away; D has A's box and
    # another category.
    PAIR = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [10, 0, 100, 100], "score": 0.8},
            {"image_id": 1, "category_id": 1, "bbox": [300, 300, 50, 50], "score": 0.7},
            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 100], "score": 0.5}]

    def scores_by_box(self, out):
        return {(d["category_id"], tuple(d["bbox"])): d["score"] for d in out}

    def test_soft_nms_decays_scores(self):
        iou = 9 / 11
        cases = {
            ("--soft-method", "linear"): 0.8 * (1 - iou),
            ("--soft-method", "gaussian"): 0.8 * math.exp(-iou * iou / 0.5),
            ("--soft-method", "gaussian", "--sigma", "0.25"): 0.8 * math.exp(-iou * iou / 0.25),
        }
        for args, decayed in cases.items():
            out = self.dedup(self.PAIR, "--method", "soft-nms", *args)
            scores = self.scores_by_box(out)
            self.assertEqual(len(out), 4, args)
            self.assertAlmostEqual(scores[(1, (10, 0, 100, 100))], decayed, places=9)
            self.assertEqual(scores[(1, (0, 0, 100, 100))], 0.9)
            self.assertEqual(scores[(1, (300, 300, 50, 50))], 0.7)
            self.assertEqual(scores[(2, (0, 0, 100, 100))], 0.5)
            self.assertEqual([d["score"] for d in out],
                             sorted((d["score"] for d in out), reverse=True))
        # linear decay applies only at IoU >= thr; naive zeroes the score, which is then dropped
        out = self.dedup(self.PAIR, "--method", "soft-nms", "--iou-thr", "0.9")
        self.assertEqual(self.scores_by_box(out)[(1, (10, 0, 100, 100))], 0.8)
        out = self.dedup(self.PAIR, "--method", "soft-nms", "--soft-method", "naive")
        self.assertNotIn((1, (10, 0, 100, 100)), self.scores_by_box(out))
        self.assertEqual(len(out), 3)

    def test_soft_nms_never_raises_scores(self):
        dets = clustered_detections(3)
        original = {(d["image_id"], d["category_id"], tuple(d["bbox"])): d["score"] for d in dets}
        out = self.dedup(dets, "--method", "soft-nms", "--soft-method", "gaussian")
        self.assertGreater(len(out), 0)
        decayed = 0
        for d in out:
            before = original[(d["image_id"], d["category_id"], tuple(d["bbox"]))]
            self.assertLessEqual(d["score"], before)
            self.assertGreaterEqual(d["score"], 1e-3)  # default min_score
            decayed += d["score"] < before
        self.assertGreater(decayed, len(out) // 4)
        # the best box of every (image, category) keeps its score
        best = defaultdict(float)
        for d in dets:
            key = (d["image_id"], d["category_id"])
            best[key] = max(best[key], d["score"])
        best = {k: v for k, v in best.items() if v >= 1e-3}
        top = defaultdict(float)
        for d in out:
            key = (d["image_id"], d["category_id"])
            top[key] = max(top[key], d["score"])
        self.assertEqual(dict(top), dict(best))

    def test_matrix_nms_decay(self):
        iou = 9 / 11
        for args, decayed in (((), 0.8 * math.exp(-2.0 * iou * iou)),
                              (("--sigma", "0.5"), 0.8 * math.exp(-0.5 * iou * iou)),
                              (("--kernel", "linear"), 0.8 * (1 - iou))):
            out = self.dedup(self.PAIR, "--method", "matrix-nms", *args)
            scores = self.scores_by_box(out)
            self.assertAlmostEqual(scores[(1, (10, 0, 100, 100))], decayed, places=9)
            self.assertAlmostEqual(scores[(1, (0, 0, 100, 100))], 0.9, places=12)
            self.assertAlmostEqual(scores[(1, (300, 300, 50, 50))], 0.7, places=12)
            self.assertAlmostEqual(scores[(2, (0, 0, 100, 100))], 0.5, places=12)

    def wbf(self, files, *args):
        gt = {"images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 400,
                                                                  "height": 100}],
              "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
        gt_path = write_json(self.path("gt.json"), gt)
        cmd = ["dedup", "--method", "wbf", "--gt", gt_path, "--out", self.path("out.json")]
        for i, dets in enumerate(files):
            cmd += ["--dt", write_json(self.path(f"model{i}.json"), dets)]
        self.run_cli(*cmd, *args)
        with open(self.path("out.json")) as f:
            return json.load(f)

    def assert_dets_close(self, got, want):
        self.assertEqual(len(got), len(want), got)
        for g, w in zip(got, want):
            self.assertEqual((g["image_id"], g["category_id"]), (w["image_id"], w["category_id"]))
            # fused boxes are accumulated in float32, as ensemble_boxes does
            for a, b in zip(g["bbox"], w["bbox"]):
                self.assertAlmostEqual(a, b, delta=1e-4)
            self.assertAlmostEqual(g["score"], w["score"], delta=1e-6)

    def test_wbf_two_identical_files(self):
        # Per cluster: boxes weighted by score * model weight; fused score = mean(score * weight)
        # * min(models, members) / sum(weights). A (0.9) and B (0.6) overlap with IoU 9/11 >
        # 0.55; with weights 2, 1 their weighted scores are A 1.8, 0.9 and B 1.2, 0.6.
        dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": [10, 0, 100, 100], "score": 0.6},
                {"image_id": 1, "category_id": 2, "bbox": [150, 150, 40, 40], "score": 0.5},
                {"image_id": 2, "category_id": 1, "bbox": [20, 10, 100, 50], "score": 0.4}]
        # cluster {A, A, B, B}: x1 = (2.7 * 0 + 1.8 * 10) / 4.5 = 4, x2 = (2.7 * 100 + 1.8 * 110)
        # / 4.5 = 104; score = 4.5 / 4 * 2 / 3 = 0.75. Singletons keep box and score
        # (mean(2s, s) * 2 / 3 = s).
        want = [{"image_id": 1, "category_id": 1, "bbox": [4, 0, 100, 100], "score": 0.75},
                {"image_id": 1, "category_id": 2, "bbox": [150, 150, 40, 40], "score": 0.5},
                {"image_id": 2, "category_id": 1, "bbox": [20, 10, 100, 50], "score": 0.4}]
        self.assert_dets_close(self.wbf([dets, dets], "--weights", "2,1"), want)
        self.assert_dets_close(self.wbf([dets, dets]), want)

    def test_wbf_weights_matter(self):
        a = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9}]
        b = [{"image_id": 1, "category_id": 1, "bbox": [10, 0, 100, 100], "score": 0.6}]
        # weights 2, 1: box = (1.8 A + 0.6 B) / 2.4 -> x1 2.5, x2 102.5; score 2.4 / 2 * 2 / 3
        self.assert_dets_close(
            self.wbf([a, b], "--weights", "2,1"),
            [{"image_id": 1, "category_id": 1, "bbox": [2.5, 0, 100, 100], "score": 0.8}])
        # weights 1, 1: box = (0.9 A + 0.6 B) / 1.5 -> x1 4, x2 104; score 1.5 / 2 * 2 / 2
        self.assert_dets_close(
            self.wbf([a, b]),
            [{"image_id": 1, "category_id": 1, "bbox": [4, 0, 100, 100], "score": 0.75}])
        # a box present in one model only is down-weighted: 0.9 * 2 * 1 / 3
        c = [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.9}]
        got = self.wbf([c, []], "--weights", "2,1")
        self.assertAlmostEqual(got[0]["score"], 0.6, places=9)

    def test_errors(self):
        dets = clustered_detections(1, num_images=3)
        dt = write_json(self.path("dt.json"), dets)
        out = self.path("out.json")

        def fails(*args, code=None):
            proc = self.run_cli("dedup", *args, ok=False)
            self.assertNotEqual(proc.returncode, 0, args)
            if code is not None:
                self.assertEqual(proc.returncode, code, proc.stderr)
            self.assertFalse(os.path.exists(out), args)
            return proc.stderr

        err = fails("--dt", self.path("missing.json"), "--method", "nms", "--out", out)
        self.assertIn("--dt", err)
        self.assertIn("missing.json", err)
        err = fails("--dt", dt, "--method", "fast-nms", "--out", out)
        self.assertIn("--method", err)
        self.assertIn("fast-nms", err)
        err = fails("--dt", dt, "--dt", dt, "--method", "wbf", "--out", out, code=1)
        self.assertIn("setdet: error:", err)
        self.assertIn("--gt", err)
        gt = write_json(self.path("gt.json"), {
            "images": [{"id": i, "width": 640, "height": 480} for i in range(1, 4)],
            "annotations": [], "categories": [{"id": c, "name": str(c)} for c in range(1, 5)]})
        err = fails("--dt", dt, "--dt", dt, "--method", "wbf", "--gt", gt, "--weights", "1,2,3",
                    "--out", out, code=1)
        self.assertIn("--weights", err)
        self.assertIn("2", err)
        self.assertIn("3", err)
        err = fails("--dt", dt, "--method", "nms", "--iou-thr", "1.5", "--out", out, code=1)
        self.assertIn("--iou-thr", err)
        err = fails("--dt", dt, "--method", "matrix-nms", "--iou-thr", "0.5", "--out", out,
                    code=1)
        self.assertIn("--iou-thr", err)
        err = fails("--dt", dt, "--method", "nms", "--soft-method", "gaussian", "--out", out,
                    code=1)
        self.assertIn("--soft-method", err)
        err = fails("--dt", dt, "--method", "nms", "--weights", "1", "--out", out, code=1)
        self.assertIn("--weights", err)
        err = fails("--dt", dt, "--method", "nms", code=None)
        self.assertIn("--out", err)
        with open(self.path("bad.json"), "w") as f:
            json.dump([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}], f)
        err = fails("--dt", self.path("bad.json"), "--method", "nms", "--out", out, code=1)
        self.assertIn("bad.json", err)
        self.assertIn("bbox", err)
        # an image id absent from --gt
        stray = write_json(self.path("stray.json"), [
            {"image_id": 77, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}])
        err = fails("--dt", stray, "--method", "wbf", "--gt", gt, "--out", out, code=1)
        self.assertIn("77", err)


if __name__ == "__main__":
    unittest.main()
