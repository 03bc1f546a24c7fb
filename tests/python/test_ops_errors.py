"""Bad input to torch.ops.setdet.* raises RuntimeError naming the op, the argument, what was
expected and what was received: wrong shapes, mismatched lengths, wrong dtypes, NaN / inf,
parameters outside their range."""
import math
import re
import unittest

import torch

from setdet_testing import load_ops

ops = load_ops()

BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [20.0, 0.0, 30.0, 8.0]])
SCORES = torch.tensor([0.9, 0.8, 0.7])
IDXS = torch.tensor([0, 1, 0])


def with_value(t, index, value):
    t = t.clone()
    t[index] = value
    return t


class ErrorMessageTest(unittest.TestCase):
    def assert_error(self, message, fn, *args, **kwargs):
        with self.assertRaisesRegex(RuntimeError, "^" + re.escape(message)):
            fn(*args, **kwargs)

    def test_wrong_box_shapes(self):
        for op, args, name in (
                (ops.nms, (SCORES, 0.5), "setdet::nms"),
                (ops.batched_nms, (SCORES, IDXS, 0.5), "setdet::batched_nms"),
                (ops.soft_nms, (SCORES, 0.3, 0.5, 1e-3, "linear"), "setdet::soft_nms"),
                (ops.matrix_nms, (SCORES,), "setdet::matrix_nms")):
            with self.subTest(op=name):
                self.assert_error(f"{name}: boxes must be a 2-D tensor of shape [N, 4], got shape "
                                  "[3, 5]", op, torch.zeros((3, 5)), *args)
                self.assert_error(f"{name}: boxes must be a 2-D tensor of shape [N, 4], got shape "
                                  "[12]", op, BOXES.flatten(), *args)
        self.assert_error("setdet::box_iou: boxes2 must be a 2-D tensor of shape [N, 4], got "
                          "shape [2, 4, 1]", ops.box_iou, BOXES, torch.zeros((2, 4, 1)))
        self.assert_error("setdet::generalized_box_iou: boxes1 must be a 2-D tensor of shape "
                          "[N, 4], got shape [3, 3]", ops.generalized_box_iou, BOXES[:, :3], BOXES)
        self.assert_error("setdet::linear_sum_assignment: cost must be a 2-D tensor of shape "
                          "[N, M], got shape [5]", ops.linear_sum_assignment, torch.zeros(5))
        self.assert_error("setdet::weighted_boxes_fusion: boxes[1] must be a 2-D tensor of shape "
                          "[N, 4], got shape [1, 2]", ops.weighted_boxes_fusion,
                          [BOXES / 40, torch.zeros((1, 2))], [SCORES, SCORES[:1]], [IDXS, IDXS[:1]])

    def test_wrong_per_box_shapes_and_lengths(self):
        self.assert_error("setdet::nms: scores must be a 1-D tensor, got shape [3, 1]", ops.nms,
                          BOXES, SCORES[:, None], 0.5)
        self.assert_error("setdet::nms: scores must have one entry per box (boxes has 3), got 2",
                          ops.nms, BOXES, SCORES[:2], 0.5)
        self.assert_error("setdet::batched_nms: idxs must have one entry per box (boxes has 3), "
                          "got 4", ops.batched_nms, BOXES, SCORES, torch.tensor([0, 1, 0, 1]), 0.5)
        self.assert_error("setdet::soft_nms: scores must have one entry per box (boxes has 3), "
                          "got 0", ops.soft_nms, BOXES, SCORES[:0], 0.3, 0.5, 1e-3, "linear")
        self.assert_error("setdet::matrix_nms: labels must have one entry per box (boxes has 3), "
                          "got 1", ops.matrix_nms, BOXES, SCORES, IDXS[:1])
        self.assert_error("setdet::weighted_boxes_fusion: scores[0] must have one entry per box "
                          "(boxes[0] has 3), got 2", ops.weighted_boxes_fusion, [BOXES / 40],
                          [SCORES[:2]], [IDXS])
        self.assert_error("setdet::weighted_boxes_fusion: scores must hold one tensor per model "
                          "(boxes has 2), got 1", ops.weighted_boxes_fusion,
                          [BOXES / 40, BOXES / 40], [SCORES], [IDXS, IDXS])
        self.assert_error("setdet::weighted_boxes_fusion: labels must hold one tensor per model "
                          "(boxes has 1), got 2", ops.weighted_boxes_fusion, [BOXES / 40],
                          [SCORES], [IDXS, IDXS])
        self.assert_error("setdet::weighted_boxes_fusion: weights must hold one weight per model "
                          "(boxes has 1), got 2", ops.weighted_boxes_fusion, [BOXES / 40],
                          [SCORES], [IDXS], [1.0, 2.0])

    def test_wrong_dtypes(self):
        self.assert_error("setdet::nms: boxes must be float32 or float64, got int64", ops.nms,
                          BOXES.long(), SCORES, 0.5)
        self.assert_error("setdet::nms: boxes must be float32 or float64, got float16", ops.nms,
                          BOXES.half(), SCORES.half(), 0.5)
        self.assert_error("setdet::nms: scores must have the same dtype as boxes (float32), got "
                          "float64", ops.nms, BOXES, SCORES.double(), 0.5)
        self.assert_error("setdet::batched_nms: idxs must be an integer tensor, got float32",
                          ops.batched_nms, BOXES, SCORES, IDXS.float(), 0.5)
        self.assert_error("setdet::batched_nms: idxs must be an integer tensor, got bool",
                          ops.batched_nms, BOXES, SCORES, IDXS.bool(), 0.5)
        self.assert_error("setdet::box_iou: boxes2 must have the same dtype as boxes1 (float64), "
                          "got float32", ops.box_iou, BOXES.double(), BOXES)
        self.assert_error("setdet::distance_box_iou: boxes1 must be float32 or float64, got "
                          "int32", ops.distance_box_iou, BOXES.int(), BOXES.int())
        self.assert_error("setdet::soft_nms: scores must have the same dtype as boxes (float64), "
                          "got float32", ops.soft_nms, BOXES.double(), SCORES, 0.3, 0.5, 1e-3,
                          "linear")
        self.assert_error("setdet::matrix_nms: labels must be an integer tensor, got float32",
                          ops.matrix_nms, BOXES, SCORES, IDXS.float())
        self.assert_error("setdet::linear_sum_assignment: cost must be float32 or float64, got "
                          "int64", ops.linear_sum_assignment, torch.ones((2, 2), dtype=torch.long))
        self.assert_error("setdet::weighted_boxes_fusion: labels[0] must be an integer tensor, "
                          "got float32", ops.weighted_boxes_fusion, [BOXES / 40], [SCORES],
                          [IDXS.float()])
        self.assert_error("setdet::weighted_boxes_fusion: boxes[1] must have the same dtype as "
                          "boxes[0] (float32), got float64", ops.weighted_boxes_fusion,
                          [BOXES / 40, BOXES.double() / 40], [SCORES, SCORES.double()],
                          [IDXS, IDXS])

    def test_non_finite_values(self):
        for value, text in ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")):
            with self.subTest(value=text):
                bad_boxes = with_value(BOXES, (1, 2), value)
                bad_scores = with_value(SCORES, 2, value)
                self.assert_error(f"setdet::nms: boxes must be finite, got {text} at boxes[1, 2]",
                                  ops.nms, bad_boxes, SCORES, 0.5)
                self.assert_error(f"setdet::nms: scores must be finite, got {text} at scores[2]",
                                  ops.nms, BOXES, bad_scores, 0.5)
                self.assert_error(f"setdet::batched_nms: boxes must be finite, got {text} at "
                                  "boxes[1, 2]", ops.batched_nms, bad_boxes, SCORES, IDXS, 0.5)
                self.assert_error(f"setdet::soft_nms: scores must be finite, got {text} at "
                                  "scores[2]", ops.soft_nms, BOXES, bad_scores, 0.3, 0.5, 1e-3,
                                  "gaussian")
                self.assert_error(f"setdet::matrix_nms: boxes must be finite, got {text} at "
                                  "boxes[1, 2]", ops.matrix_nms, bad_boxes, SCORES)
                self.assert_error(f"setdet::box_iou: boxes2 must be finite, got {text} at "
                                  "boxes2[1, 2]", ops.box_iou, BOXES, bad_boxes)
                self.assert_error(f"setdet::generalized_box_iou: boxes1 must be finite, got "
                                  f"{text} at boxes1[1, 2]", ops.generalized_box_iou,
                                  bad_boxes.double(), BOXES.double())
                self.assert_error(f"setdet::linear_sum_assignment: cost must be finite, got "
                                  f"{text} at cost[1, 2]", ops.linear_sum_assignment,
                                  bad_boxes)
                self.assert_error(f"setdet::weighted_boxes_fusion: scores[1] must be finite, got "
                                  f"{text} at scores[1][2]", ops.weighted_boxes_fusion,
                                  [BOXES / 40, BOXES / 40], [SCORES, bad_scores], [IDXS, IDXS])

    def test_parameters_out_of_range(self):
        for thr, text in ((1.5, "1.5"), (-0.1, "-0.1"), (math.nan, "nan")):
            with self.subTest(iou_threshold=text):
                self.assert_error(f"setdet::nms: iou_threshold must be in [0, 1], got {text}",
                                  ops.nms, BOXES, SCORES, thr)
                self.assert_error(f"setdet::batched_nms: iou_threshold must be in [0, 1], got "
                                  f"{text}", ops.batched_nms, BOXES, SCORES, IDXS, thr)
                self.assert_error(f"setdet::soft_nms: iou_threshold must be in [0, 1], got {text}",
                                  ops.soft_nms, BOXES, SCORES, thr, 0.5, 1e-3, "linear")
                self.assert_error(f"setdet::weighted_boxes_fusion: iou_threshold must be in "
                                  f"[0, 1], got {text}", ops.weighted_boxes_fusion, [BOXES / 40],
                                  [SCORES], [IDXS], iou_threshold=thr)
        self.assert_error("setdet::soft_nms: sigma must be finite and > 0, got 0", ops.soft_nms,
                          BOXES, SCORES, 0.3, 0.0, 1e-3, "gaussian")
        self.assert_error("setdet::soft_nms: min_score must be finite, got inf", ops.soft_nms,
                          BOXES, SCORES, 0.3, 0.5, math.inf, "gaussian")
        self.assert_error("setdet::soft_nms: method must be 'linear', 'gaussian' or 'naive', got "
                          "'hard'", ops.soft_nms, BOXES, SCORES, 0.3, 0.5, 1e-3, "hard")
        self.assert_error("setdet::matrix_nms: kernel must be 'gaussian' or 'linear', got 'box'",
                          ops.matrix_nms, BOXES, SCORES, None, "box")
        self.assert_error("setdet::matrix_nms: sigma must be finite and > 0, got -1",
                          ops.matrix_nms, BOXES, SCORES, sigma=-1.0)
        self.assert_error("setdet::matrix_nms: score_threshold must be finite, got nan",
                          ops.matrix_nms, BOXES, SCORES, score_threshold=math.nan)
        self.assert_error("setdet::matrix_nms: pre_top_k must be -1 (all) or >= 0, got -2",
                          ops.matrix_nms, BOXES, SCORES, pre_top_k=-2)
        self.assert_error("setdet::matrix_nms: keep_top_k must be -1 (all) or >= 0, got -5",
                          ops.matrix_nms, BOXES, SCORES, keep_top_k=-5)
        self.assert_error("setdet::weighted_boxes_fusion: weights[1] must be finite and > 0, got "
                          "0", ops.weighted_boxes_fusion, [BOXES / 40, BOXES / 40],
                          [SCORES, SCORES], [IDXS, IDXS], [1.0, 0.0])
        self.assert_error("setdet::weighted_boxes_fusion: conf_type must be 'avg', 'max', "
                          "'box_and_model_avg' or 'absent_model_aware_avg', got 'mean'",
                          ops.weighted_boxes_fusion, [BOXES / 40], [SCORES], [IDXS],
                          conf_type="mean")
        self.assert_error("setdet::weighted_boxes_fusion: skip_box_threshold must be finite, got "
                          "nan", ops.weighted_boxes_fusion, [BOXES / 40], [SCORES], [IDXS],
                          skip_box_threshold=math.nan)

    def test_errors_are_checked_before_the_empty_shortcut(self):
        empty = torch.zeros((0, 4))
        self.assert_error("setdet::nms: iou_threshold must be in [0, 1], got 2", ops.nms, empty,
                          torch.zeros(0), 2.0)
        self.assert_error("setdet::nms: scores must have the same dtype as boxes (float32), got "
                          "float64", ops.nms, empty, torch.zeros(0, dtype=torch.float64), 0.5)

    def test_library_still_works_after_errors(self):
        with self.assertRaises(RuntimeError):
            ops.nms(BOXES, SCORES[:1], 0.5)
        self.assertEqual(ops.nms(BOXES, SCORES, 0.1).tolist(), [0, 2])


if __name__ == "__main__":
    unittest.main()
