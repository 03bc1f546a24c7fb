"""`setdet infer` / `setdet convert` on a checkpoint written by DETA's authors' code
(jozhang97/DETA at commit f47e50e) vs the detections that code produced: same count, same labels,
boxes within 1e-2 px, scores within 1e-4 (issue 12).

tests/data/deta/ holds what the authors' code generated, and nothing of that code:
- deta_tiny_f47e50e.pth.xz: `torch.save({"model": model.state_dict()})` of the model built by the
  authors' `models.deformable_detr.build(args)` with `--with_box_refine --two_stage
  --assign_first_stage --assign_second_stage --num_feature_levels 5` (DETA's configs/deta.sh),
  made small: hidden_dim 256 (their proposal embedding fixes it), 8 heads, 1 encoder and 2 decoder
  layers, dim_feedforward 64, 60 queries, 91 classes, and a ResNet-50-shaped torchvision ResNet
  with bottleneck widths 4 / 8 / 16 / 32 registered under torchvision.models for their Backbone
  (whose channel list was set to match). Run on CPU with Debian 12's torch 1.13 / torchvision
  0.14, the CUDA extension replaced by their own pure-PyTorch `ms_deform_attn_core_pytorch`.
  Seeded random weights; the frozen BatchNorms given the statistics of the photo (realistic
  activations); the class / box output layers widened so that the untrained model ranks its
  detections clearly; every weight matrix then set to a 4-bit integer times a power of two and
  every other tensor rounded to float16, so the float16 file holds the float32 model exactly and
  compresses to 1.3 MB (xz).
- deta_tiny_f47e50e_dog.json: that model's output on darknet's dog.jpg (decoded by PIL, 768 x 576,
  normalised with ImageNet's mean / std, no resize) through the authors' NMSPostProcess (top 10000
  (query, class) pairs, class-aware NMS 0.7, 100 kept), boxes in pixels.
- deta_tiny_f47e50e.yaml: the same model described for setdet.
"""
import json
import lzma
import os
import shutil
import tempfile
import unittest

import torch

from detection_parity import compare_detections, photo_as_png
from setdet_testing import run_cli

DATA = os.path.join(os.environ.get("SETDET_TEST_DATA_DIR",
                                   os.path.join(os.path.dirname(__file__), "..", "data")), "deta")
NAME = "deta_tiny_f47e50e"


class DetaAuthorsParityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="setdet_deta_parity_")
        cls.png = photo_as_png(cls.tmp)
        cls.pth = os.path.join(cls.tmp, NAME + ".pth")
        with lzma.open(os.path.join(DATA, NAME + ".pth.xz")) as src, open(cls.pth, "wb") as dst:
            shutil.copyfileobj(src, dst)
        cls.config = os.path.join(DATA, NAME + ".yaml")
        with open(os.path.join(DATA, NAME + "_dog.json")) as f:
            ref = json.load(f)
        assert ref["reference"] == "jozhang97/DETA f47e50e", ref["reference"]
        dets = ref["detections"]
        cls.ref = {"boxes": torch.tensor([d["box_xyxy"] for d in dets], dtype=torch.float64),
                   "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float64),
                   "labels": torch.tensor([d["label"] for d in dets], dtype=torch.int64)}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def infer(self, checkpoint, out_name):
        out = os.path.join(self.tmp, out_name)
        r = run_cli("infer", "--config", self.config, "--checkpoint", checkpoint, "--json", out,
                    self.png)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            return json.load(f)[0]["detections"]

    def test_authors_checkpoint_gives_the_authors_detections(self):
        dets = self.infer(self.pth, "pth.json")
        compare_detections(self, "DETA (authors' checkpoint)", self.ref, dets, min_count=100)

    def test_converted_checkpoint_gives_the_same_detections(self):
        pt = os.path.join(self.tmp, NAME + ".pt")
        r = run_cli("convert", "--config", self.config, self.pth, pt)
        self.assertEqual(r.returncode, 0, r.stderr)
        dets = self.infer(pt, "pt.json")
        compare_detections(self, "DETA (converted to .pt)", self.ref, dets, min_count=100)


if __name__ == "__main__":
    unittest.main()
