"""torch.ops.setdet.weighted_boxes_fusion: hand-computed cases of ensemble_boxes'
weighted_boxes_fusion definition (the C++ goldens against ensemble_boxes live in the dedup
tests)."""
import unittest

import torch

from setdet_testing import load_ops

ops = load_ops()


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def labels(values):
    return torch.tensor(values, dtype=torch.int64)


class WeightedBoxesFusionTest(unittest.TestCase):
    def test_single_box_of_one_model_is_returned(self):
        for dtype in (torch.float32, torch.float64):
            box = t([[0.1, 0.2, 0.4, 0.6]], dtype)
            boxes, scores, out_labels = ops.weighted_boxes_fusion(
                [box], [t([0.7], dtype)], [labels([3])])
            self.assertEqual(boxes.dtype, dtype)
            self.assertEqual(scores.dtype, dtype)
            self.assertEqual(out_labels.dtype, torch.int64)
            self.assertEqual(boxes.tolist(), box.tolist())
            self.assertEqual(scores.tolist(), t([0.7], dtype).tolist())
            self.assertEqual(out_labels.tolist(), [3])

    def test_two_models_same_box_average_scores(self):
        box = [0.1, 0.1, 0.5, 0.5]
        boxes, scores, out_labels = ops.weighted_boxes_fusion(
            [t([box]), t([box])], [t([0.8]), t([0.6])], [labels([0]), labels([0])])
        torch.testing.assert_close(boxes, t([box]), rtol=1e-6, atol=1e-7)
        # mean(0.8, 0.6) * min(2 models, 2 boxes) / sum of weights 2
        torch.testing.assert_close(scores, t([0.7]), rtol=1e-6, atol=1e-7)
        self.assertEqual(out_labels.tolist(), [0])

    def test_model_weights_scale_scores(self):
        # one box from the model of weight 2: 0.9 * 2 * min(2, 1) / (2 + 1)
        boxes, scores, _ = ops.weighted_boxes_fusion(
            [t([[0.1, 0.1, 0.5, 0.5]]), t([[0.6, 0.6, 0.9, 0.9]])], [t([0.9]), t([0.3])],
            [labels([1]), labels([1])], [2.0, 1.0])
        torch.testing.assert_close(scores, t([0.6, 0.3 * 1 * 1 / 3.0]), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(boxes, t([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]))

    def test_overlapping_boxes_fuse_to_score_weighted_mean(self):
        a, b = [0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5]  # IoU 0.152 / 0.168 = 0.905
        boxes, scores, _ = ops.weighted_boxes_fusion([t([a, b])], [t([0.9, 0.6])],
                                                     [labels([0, 0])])
        expected = [(0.9 * x + 0.6 * y) / 1.5 for x, y in zip(a, b)]
        torch.testing.assert_close(boxes, t([expected]), rtol=1e-6, atol=1e-7)
        # mean(0.9, 0.6) * min(1 model, 2 boxes) / 1
        torch.testing.assert_close(scores, t([0.75]), rtol=1e-6, atol=1e-7)

    def test_box_joins_the_best_matching_cluster(self):
        # c overlaps both clusters above the threshold: IoU 0.45 with a (first), 0.6 with b.
        a, b, c = [0.0, 0.0, 0.4, 1.0], [0.25, 0.0, 0.65, 1.0], [0.15, 0.0, 0.55, 1.0]
        boxes, scores, _ = ops.weighted_boxes_fusion([t([a, b, c])], [t([0.9, 0.8, 0.7])],
                                                     [labels([0, 0, 0])], iou_threshold=0.3)
        fused = [(0.8 * x + 0.7 * y) / 1.5 for x, y in zip(b, c)]
        torch.testing.assert_close(boxes, t([a, fused]), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(scores, t([0.9, 0.75]), rtol=1e-6, atol=1e-7)

    def test_iou_threshold_is_strict(self):
        # IoU exactly 0.5 (intersection 0.125, union 0.25): a box joins only when IoU > thr.
        a, b = [0.0, 0.0, 0.75, 0.25], [0.25, 0.0, 1.0, 0.25]
        boxes, _, _ = ops.weighted_boxes_fusion([t([a, b])], [t([0.9, 0.8])], [labels([0, 0])],
                                                iou_threshold=0.5)
        self.assertEqual(boxes.shape[0], 2)
        boxes, _, _ = ops.weighted_boxes_fusion([t([a, b])], [t([0.9, 0.8])], [labels([0, 0])],
                                                iou_threshold=0.49)
        self.assertEqual(boxes.shape[0], 1)

    def test_labels_are_fused_separately_and_output_sorted_by_score(self):
        box = [0.2, 0.2, 0.6, 0.6]
        boxes, scores, out_labels = ops.weighted_boxes_fusion(
            [t([box, box, [0.7, 0.7, 0.8, 0.9]])], [t([0.3, 0.5, 0.9])], [labels([1, 2, 1])])
        self.assertEqual(out_labels.tolist(), [1, 2, 1])
        self.assertEqual(scores.tolist(), [0.9, 0.5, 0.3])
        self.assertEqual(boxes.tolist(), [[0.7, 0.7, 0.8, 0.9], box, box])

    def test_boxes_are_swapped_clipped_and_zero_area_dropped(self):
        boxes, scores, _ = ops.weighted_boxes_fusion(
            [t([[0.5, 1.2, -0.1, 0.4], [0.3, 0.3, 0.3, 0.8]])], [t([0.8, 0.9])],
            [labels([0, 0])])
        self.assertEqual(boxes.tolist(), [[0.0, 0.4, 0.5, 1.0]])
        self.assertEqual(scores.tolist(), [0.8])

    def test_skip_box_threshold(self):
        boxes, scores, _ = ops.weighted_boxes_fusion(
            [t([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7]])], [t([0.05, 0.5])], [labels([0, 0])],
            skip_box_threshold=0.1)
        self.assertEqual(boxes.tolist(), [[0.5, 0.5, 0.7, 0.7]])
        self.assertEqual(scores.tolist(), [0.5])

    def test_conf_type_max(self):
        box = [0.1, 0.1, 0.5, 0.5]
        _, scores, _ = ops.weighted_boxes_fusion(
            [t([box]), t([box])], [t([0.8]), t([0.6])], [labels([0]), labels([0])],
            conf_type="max")
        torch.testing.assert_close(scores, t([0.8]), rtol=1e-6, atol=1e-7)

    def test_other_integer_label_dtypes(self):
        out = ops.weighted_boxes_fusion([t([[0.1, 0.1, 0.5, 0.5]])], [t([0.5])],
                                        [torch.tensor([7], dtype=torch.int32)])
        self.assertEqual(out[2].tolist(), [7])

    def test_empty(self):
        for models in (0, 1, 3):
            boxes, scores, out_labels = ops.weighted_boxes_fusion(
                [torch.zeros((0, 4))] * models, [torch.zeros((0,))] * models,
                [torch.zeros((0,), dtype=torch.int64)] * models)
            self.assertEqual(tuple(boxes.shape), (0, 4))
            self.assertEqual(tuple(scores.shape), (0,))
            self.assertEqual(tuple(out_labels.shape), (0,))
            self.assertEqual(out_labels.dtype, torch.int64)


if __name__ == "__main__":
    unittest.main()
