"""`setdet infer` on torchvision state_dicts vs torchvision itself (Debian's torchvision 0.14).

Builds torchvision's fcos_resnet50_fpn and retinanet_resnet50_fpn (no pretrained weights) with a
fixed seed, calibrates the BatchNorm statistics of the backbone on the photo (so activations keep a
realistic range), shifts and widens the head's output layers so that the random model detects
something, saves the state_dict with torch.save, runs `setdet infer --json` with the matching
configs/torchvision config and requires torchvision's detections: same count, same labels, boxes
within 1e-2 px, scores within 1e-4.

The photo is darknet's data/dog.jpg (Debian package `darknet`, /usr/share/darknet/data), 768 x 576:
it resizes to 1066 x 800 and pads to 1088 x 800, so P6 / P7 have torchvision's uneven strides
(61 / 114 px vertically). Both sides see identical pixels: the JPEG is decoded once by PIL and
saved as PNG, which OpenCV (setdet) and PIL (torchvision) decode losslessly.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np
import torch
from PIL import Image
from torchvision.models.detection import (fasterrcnn_resnet50_fpn, fcos_resnet50_fpn,
                                          retinanet_resnet50_fpn)

from detection_parity import compare_detections, photo_as_png

BIN = os.environ.get("SETDET_BIN", "setdet")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def calibrate_batch_norm(model, image):
    """Sets every BatchNorm's running statistics to those of the backbone input `image`."""
    body = model.backbone.body
    bns = [m for m in body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass gives the batch statistics
    images, _ = model.transform([image])
    body.train()
    with torch.no_grad():
        body(images.tensors)
    model.eval()


def shift_roi_heads(model, generator, cls_std, cls_bias_std, reg_std):
    """Spread the random RPN objectness and the box predictor's class scores so that the
    untrained Faster R-CNN ranks its proposals clearly and scores some classes above 0.05."""
    with torch.no_grad():
        rpn = model.rpn.head
        rpn.cls_logits.weight.normal_(0.0, 0.05, generator=generator)
        rpn.cls_logits.bias.normal_(0.0, 1.0, generator=generator)
        rpn.bbox_pred.weight.normal_(0.0, 0.002, generator=generator)
        pred = model.roi_heads.box_predictor
        pred.cls_score.weight.normal_(0.0, cls_std, generator=generator)
        pred.cls_score.bias.normal_(0.0, cls_bias_std, generator=generator)
        pred.bbox_pred.weight.normal_(0.0, reg_std, generator=generator)
        pred.bbox_pred.bias.normal_(0.0, 0.1, generator=generator)


def shift_head(model, generator, cls_bias, cls_std, reg_bias_std):
    """Wider random output layers so the untrained head fires on some locations."""
    if hasattr(model, "roi_heads"):
        return shift_roi_heads(model, generator, cls_std, cls_bias, reg_bias_std)
    head = model.head
    with torch.no_grad():
        head.classification_head.cls_logits.weight.normal_(0.0, cls_std, generator=generator)
        head.classification_head.cls_logits.bias.normal_(cls_bias, 0.2, generator=generator)
        reg = head.regression_head.bbox_reg
        reg.weight.normal_(0.0, 0.01, generator=generator)
        reg.bias.normal_(0.0, reg_bias_std, generator=generator)
        if hasattr(head.regression_head, "bbox_ctrness"):
            head.regression_head.bbox_ctrness.bias.fill_(1.0)


class TorchvisionParityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="setdet_tv_parity_")
        cls.png = photo_as_png(cls.tmp)
        # the same pixels torchvision's examples feed: uint8 RGB -> float in [0, 1]
        pixels = np.asarray(Image.open(cls.png).convert("RGB"))
        cls.image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_pair(self, name, builder, config, cls_bias, cls_std, reg_bias_std, model_kwargs=None,
                 overrides=()):
        torch.manual_seed(0)
        model = builder(weights=None, weights_backbone=None, num_classes=91,
                        **(model_kwargs or {}))
        calibrate_batch_norm(model, self.image)
        shift_head(model, torch.Generator().manual_seed(1), cls_bias, cls_std, reg_bias_std)
        model.eval()
        with torch.no_grad():
            ref = model([self.image])[0]
        pth = os.path.join(self.tmp, f"{name}.pth")
        torch.save(model.state_dict(), pth)

        out = os.path.join(self.tmp, f"{name}.json")
        r = subprocess.run([BIN, "infer", "--config", os.path.join(REPO, config), "--checkpoint",
                            pth, "--json", out, *overrides, self.png],
                           capture_output=True, text=True, timeout=1200)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            dets = json.load(f)[0]["detections"]
        return ref, dets

    def compare(self, name, ref, dets, min_count, label_offset=0, max_unmatched=0):
        compare_detections(self, name, ref, dets, min_count, label_offset, max_unmatched)

    def test_fcos_resnet50_fpn(self):
        ref, dets = self.run_pair("fcos", fcos_resnet50_fpn,
                                  "configs/torchvision/fcos_resnet50_fpn.yaml",
                                  cls_bias=-8.2, cls_std=0.03, reg_bias_std=1.0)
        self.compare("fcos_resnet50_fpn", ref, dets, min_count=10)

    def test_retinanet_resnet50_fpn(self):
        ref, dets = self.run_pair("retinanet", retinanet_resnet50_fpn,
                                  "configs/torchvision/retinanet_resnet50_fpn.yaml",
                                  cls_bias=-6.9, cls_std=0.3, reg_bias_std=0.3)
        self.compare("retinanet_resnet50_fpn", ref, dets, min_count=10)

    # Faster R-CNN: cls_bias is the std of the class-score biases; setdet's labels are
    # torchvision's - 1 (no background class).
    def test_fasterrcnn_resnet50_fpn_exact(self):
        """Every proposal kept (top-n never binding) on a 320 px input: the whole pipeline must
        give torchvision's detections exactly."""
        ref, dets = self.run_pair(
            "fasterrcnn_small", fasterrcnn_resnet50_fpn,
            "configs/torchvision/fasterrcnn_resnet50_fpn.yaml", cls_bias=2.0, cls_std=0.05,
            reg_bias_std=0.01,
            model_kwargs=dict(min_size=320, max_size=512, rpn_pre_nms_top_n_test=100000,
                              rpn_post_nms_top_n_test=100000),
            overrides=["--set", "model.rpn.test_cfg.pre_nms_top_n=100000",
                       "--set", "model.rpn.test_cfg.post_nms_top_n=100000",
                       "--set", "data.test.dataset.pipeline.0.min_size=320",
                       "--set", "data.test.dataset.pipeline.0.max_size=512"])
        self.compare("fasterrcnn_resnet50_fpn (320 px, all proposals)", ref, dets, min_count=50,
                     label_offset=1)

    def test_fasterrcnn_resnet50_fpn(self):
        """torchvision's defaults (800 px, 1000 proposals per level and per image). The random
        RPN's objectness is dense (neighbouring ranks ~1e-5 apart at rank 1000, the size of the
        two sides' float32 differences), so one proposal may swap at a top-n boundary; a trained
        RPN separates its proposals far more clearly."""
        ref, dets = self.run_pair("fasterrcnn", fasterrcnn_resnet50_fpn,
                                  "configs/torchvision/fasterrcnn_resnet50_fpn.yaml",
                                  cls_bias=2.0, cls_std=0.05, reg_bias_std=0.01)
        self.compare("fasterrcnn_resnet50_fpn", ref, dets, min_count=50, label_offset=1,
                     max_unmatched=2)


if __name__ == "__main__":
    unittest.main()
