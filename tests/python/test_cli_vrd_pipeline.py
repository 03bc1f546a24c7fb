"""The VRD pipeline end to end through the CLI on a tiny generated set (128 px, a few images):
stage-1 detectors (`setdet train`, `setdet transfer` + `--load-from`, ClassBalancedSampler),
`setdet vrd train`, `setdet vrd predict` (every variant, the drawing), `setdet vrd eval`, reloading
and resuming, and input errors. One thread: tens of seconds even on a busy machine."""
import csv
import json
import os
import re
import struct

from cli_testing import CliTestCase

HEADER = ["ImageID", "LabelName1", "LabelName2", "XMin1", "XMax1", "YMin1", "YMax1", "XMin2",
          "XMax2", "YMin2", "YMax2", "RelationshipLabel", "Score"]
CLASSES = ["circle", "square", "triangle", "star", "hexagon", "cross"]
ATTRIBUTES = ["plain", "striped", "dotted", "checkered"]

PIPELINE = ("{type: Resize, scale: [128, 128], keep_ratio: true}, "
            "{type: Normalize, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], "
            "to_rgb: true}, {type: Pad, size_divisor: 32}")

DETECTOR = """
model:
  type: FCOS
  num_classes: 6
  backbone: {type: ResNet, depth: 18, base_channels: 8, out_indices: [1, 2, 3]}
  neck: {type: FPN, out_channels: 16, num_outs: 5, extra_input: p5}
  head: {type: FCOSHead, channels: 16, num_convs: 1, gn_groups: 4}
  test_cfg: {score_thr: 0.0, pre_nms_top_k: 100, nms_thr: 0.6, max_per_img: 12}
data:
  train:
    batch_size: 4
    num_workers: 1
    dataset:
      {type: CocoDataset, data_root: DATA/, ann_file: annotations/instances_train.json,
       img_dir: train/, pipeline: [PIPELINE]}
  val:
    batch_size: 4
    num_workers: 1
    dataset:
      {type: CocoDataset, data_root: DATA/, ann_file: annotations/instances_val.json,
       img_dir: val/, filter_empty: false, pipeline: [PIPELINE]}
optimizer: {type: AdamW, lr: 1.0e-3, weight_decay: 0.0}
runner: {max_iters: 2, seed: 0, log_interval: 1, eval_interval: 0, checkpoint_interval: 0}
"""

ATTRIBUTE_DETECTOR = """
_base_: det.yaml
model: {num_classes: 24}
data:
  train:
    sampler: {type: ClassBalancedSampler, cap: 5}
    dataset: {type: VrdAttributeDataset, vrd_file: annotations/vrd_train.csv,
              attributes: [striped, dotted, checkered]}
  val:
    dataset: {type: VrdAttributeDataset, vrd_file: annotations/vrd_val.csv,
              attributes: [striped, dotted, checkered]}
"""

VRD = """
work_dir: WORK/pipeline
data:
  root: DATA/
  train: {instances: annotations/instances_train.json, images: train/,
          relationships: annotations/vrd_train.csv}
  val: {instances: annotations/instances_val.json, images: val/,
        relationships: annotations/vrd_val.csv}
  test: {instances: annotations/instances_test.json, images: test/}
stage1:
  objects: [{config: WORK/det.yaml, checkpoint: WORK/objects/latest.pt}]
  attributes: {config: WORK/attr.yaml, checkpoint: WORK/attributes/latest.pt}
  score_threshold: 0.0
  max_objects: 4
  attribute_min_score: 0.0
stage2:
  negative_fraction: 0.5
  spatial: {booster: dart, max_depth: 4, subsample: 0.5, lambda: 1, rate_drop: 0.1,
            num_rounds: 6, early_stopping_rounds: 3, eval_interval: 2}
  visual:
    backbone: {type: ResNet, depth: 18, base_channels: 8, in_channels: 5, out_indices: [3]}
    init_backbone: {checkpoint: WORK/objects/latest.pt}
    crop_size: 32
    hidden: [16, 8]
    batch_size: 8
    max_iters: 3
    log_interval: 1
    optimizer: {type: AdamW, lr: 1.0e-3}
    lr_schedule: {type: Cosine, warmup: linear, warmup_iters: 1, min_lr_ratio: 0.1}
stage3:
  boxes: gt
  xgboost: {booster: gbtree, max_depth: 3, num_rounds: 5, early_stopping_rounds: 3}
"""


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


class VrdPipelineCliTest(CliTestCase):
    def run_cli(self, *args, ok=True):
        # one thread: LibTorch's OpenMP threads crawl when other processes hold the cores
        return super().run_cli("--threads", "1", *args, ok=ok)

    def write(self, name, text):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text.replace("PIPELINE", PIPELINE).replace("DATA", self.path("data"))
                    .replace("WORK", self.dir))
        return path

    def stage1(self):
        self.run_cli("data", "synth-vrd", "--out", self.path("data"), "--num-train", "20",
                     "--num-val", "12", "--num-test", "6", "--size", "128")
        det = self.write("det.yaml", DETECTOR)
        self.run_cli("train", det, "--work-dir", self.path("objects"))
        attr = self.write("attr.yaml", ATTRIBUTE_DETECTOR)
        targets = [f"{c}:{a}" for c in CLASSES for a in ATTRIBUTES]
        mapping = "".join(f"  '{t}': {t.split(':')[0]}\n" for t in targets)
        transfer = self.write("map.yaml", (
            f"target_config: {attr}\nsource_classes: [{', '.join(CLASSES)}]\n"
            f"target_classes: [{', '.join(repr(t) for t in targets)}]\nclasses:\n{mapping}"
            "class_tensors:\n  - {name: 'head\\.classification_head\\.cls_logits\\.(weight|bias)'}\n"))
        proc = self.run_cli("transfer", "--map", transfer, self.path("objects/latest.pt"),
                            self.path("init.pt"))
        self.assertIn("2 class tensors with 24 of 24 classes mapped", proc.stdout)
        self.run_cli("train", attr, "--work-dir", self.path("attributes"), "--load-from",
                     self.path("init.pt"))
        return self.write("vrd.yaml", VRD)

    def read_rows(self, path):
        with open(path) as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], HEADER)
        return rows[1:]

    def test_train_predict_eval(self):
        config = self.stage1()
        train = self.run_cli("vrd", "train", config)
        for stage in ("stage 2 spatial", "stage 2 visual: iter 3/3", "stage 3", "trained in"):
            self.assertIn(stage, train.stderr)
        # both stage-2 models train on one sample of the pairs: those with a relationship and about
        # half of the others (the paper's visual model uses the spatial model's samples)
        candidates = int(re.search(r"stage 2: (\d+) candidate pairs", train.stderr).group(1))
        sampled = int(re.search(r"stage 2: (\d+) of them train both models", train.stderr).group(1))
        fit, val = map(int, re.search(r"stage 2 spatial: (\d+) pairs to fit \(\d+ images\), (\d+) "
                                      r"for early stopping", train.stderr).groups())
        visual = int(re.search(r"stage 2 visual: (\d+) training pairs", train.stderr).group(1))
        self.assertLess(sampled, candidates)
        self.assertEqual(fit + val, sampled)
        self.assertEqual(visual, sampled)
        work = self.path("pipeline")
        with open(os.path.join(work, "vrd_model.json")) as f:
            model = json.load(f)
        predicates = model["predicates"]
        self.assertEqual(predicates, ["connected_to", "inside_of", "next_to", "on", "pointing_at",
                                      "same_texture_as", "under"])
        for p in predicates:
            for stage, prefix in (("stage2", "spatial_"), ("stage3", "stage3_")):
                self.assertTrue(os.path.isfile(os.path.join(work, stage, f"{prefix}{p}.json")))
        self.assertTrue(os.path.isfile(os.path.join(work, "stage2", "visual.pt")))

        out = self.path("pred/dt.csv")
        proc = self.run_cli("vrd", "predict", config, "--out", out, "--variants-dir",
                            self.path("pred"), "--vis", self.path("pred/vis.png"),
                            "--vis-images", "3", "--vis-min-score", "0")
        self.assertIn("stage 1: object detector 0", proc.stderr)
        rows = self.read_rows(out)
        with open(self.path("pred/dt_stage3.csv")) as f, open(out) as g:
            self.assertEqual(f.read(), g.read())
        images = {f"test_{i:06d}" for i in range(6)}
        seen_predicates = set()
        for r in rows:
            self.assertIn(r[0], images)
            boxes = [float(v) for v in r[3:11]]
            self.assertTrue(all(0.0 <= v <= 1.0 for v in boxes), r)
            self.assertLessEqual(boxes[0], boxes[1])
            self.assertLessEqual(boxes[2], boxes[3])
            self.assertGreaterEqual(float(r[12]), 1e-4)
            seen_predicates.add(r[11])
            if r[11] == "is":
                self.assertIn(r[2], ATTRIBUTES[1:])
                self.assertEqual(r[3:7], r[7:11])
            else:
                self.assertIn(r[1], CLASSES)
                self.assertIn(r[2], CLASSES)
        self.assertIn("is", seen_predicates)
        self.assertTrue(seen_predicates - {"is"})
        # per image, descending scores
        last = {}
        for r in rows:
            if r[0] in last:
                self.assertLessEqual(float(r[12]), last[r[0]])
            last[r[0]] = float(r[12])
        for v in ("spatial", "visual", "average"):
            other = self.read_rows(self.path(f"pred/dt_{v}.csv"))
            self.assertTrue(other)
        width, height = png_size(self.path("pred/vis.png"))
        self.assertEqual(width, 3 * 512)
        self.assertGreater(height, 512)

        metrics = self.path("pred/eval.json")
        self.run_cli("vrd", "eval", "--gt", self.path("data/annotations/vrd_test.csv"), "--labels",
                     self.path("data/annotations/labels_test.csv"), "--dt", out, "--json", metrics)
        with open(metrics) as f:
            scores = json.load(f)
        self.assertGreaterEqual(scores["score"], 0.0)
        self.assertEqual(scores["num_detections"], len(rows))

        # the saved models reload: predicting again gives the same file
        again = self.path("again.csv")
        self.run_cli("vrd", "predict", config, "--out", again)
        with open(again) as f:
            self.assertEqual(f.read(), open(out).read())
        # --resume loads every model instead of training it
        resumed = self.run_cli("vrd", "train", config, "--resume")
        self.assertIn("stage 2 visual: loaded", resumed.stderr)
        self.assertEqual(resumed.stderr.count("loaded"), 1 + 2 * len(predicates))

    def test_errors(self):
        self.run_cli("data", "synth-vrd", "--out", self.path("data"), "--num-train", "4",
                     "--num-val", "2", "--num-test", "2", "--size", "128")
        config = self.write("vrd.yaml", VRD)
        proc = self.run_cli("vrd", "predict", config, "--out", self.path("dt.csv"), ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("no trained pipeline in", proc.stderr)
        proc = self.run_cli("vrd", "train", config, "--set", "stage2.visual.mask=circle", ok=False)
        self.assertIn("stage2.visual.mask: expected boxes or hull, got 'circle'", proc.stderr)
        proc = self.run_cli("vrd", "train", config, "--set", "stage3.colour=red", ok=False)
        self.assertIn("unknown key 'stage3.colour'", proc.stderr)
        proc = self.run_cli("vrd", "train", config, "--set", "stage2.boxes=predicted", ok=False)
        self.assertIn("stage2.boxes: expected gt or detections, got 'predicted'", proc.stderr)
        bad_map = self.write("map.yaml", "source_classes: [a]\ntarget_classes: [b]\n"
                             "classes: {b: c}\nclass_tensors: [{name: w}]\n")
        proc = self.run_cli("transfer", "--map", bad_map, config, self.path("b.pt"), ok=False)
        self.assertIn("map.yaml: classes.b: 'c' is not a source class (a)", proc.stderr)
