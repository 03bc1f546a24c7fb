// First-stage query selection of two-stage Deformable DETR: which encoder positions become the
// decoder's queries.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace setdet {

// Deformable DETR: the k positions of highest logit per image. logits [N, S] -> [N, k] int64, by
// descending logit.
at::Tensor topk_query_selection(const at::Tensor& logits, int64_t k);

struct DetaQuerySelectionOptions {
  int64_t pre_nms_top_k = 1000;    // per level, by sigmoid score
  double nms_iou_threshold = 0.9;  // NMS per level
};

// DETA (jozhang97/DETA deformable_transformer.py, assign_first_stage): per image, the top
// pre_nms_top_k positions of each level by sigmoid(logit); NMS per level at nms_iou_threshold on
// `boxes` (scores: the logits); of the survivors in descending score order, the first k / L of
// each level; slots left free (levels with fewer survivors) go to the highest-scoring survivors
// not yet chosen. If fewer than k survive the NMS, the plain top-k is used instead (as the
// reference does) before the per-level share. logits [N, S]; boxes [N, S, 4] xyxy (the
// reference: the first-stage boxes clamped to [0, 1]); level_ids [S] int64 in [0, num_levels)
// -> [N, k] int64 in survivor order (descending score).
//
// The reference ranks each level by sigmoid(logit) * (level == l) over all positions, so a level
// with fewer than pre_nms_top_k positions also admits arbitrary zero-score positions of other
// levels into its NMS; those are either duplicates of positions already present (suppressed at
// IoU 1) or rank below every kept position of their own level. Here each level takes only its
// own top min(pre_nms_top_k, size) positions.
at::Tensor deta_query_selection(const at::Tensor& logits, const at::Tensor& boxes,
                                const at::Tensor& level_ids, int64_t num_levels, int64_t k,
                                const DetaQuerySelectionOptions& options = {});

}  // namespace setdet
