#include "setdet/models/post_processing.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace setdet {

PostProcessConfig PostProcessConfig::from_config(const Config& cfg,
                                                 const PostProcessConfig& defaults,
                                                 const std::vector<std::string>& extra_keys) {
  std::vector<std::string> keys = extra_keys;
  keys.insert(keys.end(), {"score_thr", "pre_nms_top_k", "nms", "nms_thr", "max_per_img", "clip"});
  cfg.check_keys(keys);
  PostProcessConfig p = defaults;
  p.score_thr = cfg.get<double>("score_thr", p.score_thr);
  SETDET_CHECK(std::isfinite(p.score_thr), cfg.where(),
               ".score_thr: expected a finite number, got ", p.score_thr);
  p.pre_nms_top_k = cfg.get<int64_t>("pre_nms_top_k", p.pre_nms_top_k);
  p.max_per_img = cfg.get<int64_t>("max_per_img", p.max_per_img);
  p.clip = cfg.get<bool>("clip", p.clip);
  SETDET_CHECK(!(cfg.has("nms") && cfg.has("nms_thr")), cfg.where(),
               ": give either nms or nms_thr (short for nms: {type: nms, iou_threshold: X})");
  if (cfg.has("nms_thr")) {
    const auto thr = cfg.get<double>("nms_thr");
    SETDET_CHECK(std::isfinite(thr) && thr >= 0 && thr <= 1, cfg["nms_thr"].where(),
                 ": expected a value in [0, 1], got ", thr);
    p.nms.type = "nms";
    p.nms.iou_threshold = thr;
  }
  if (cfg.has("nms")) p.nms = duplicate_removal_from_config(cfg["nms"], p.nms);
  return p;
}

Candidates select_candidates(const at::Tensor& scores, double score_thr, int64_t top_k) {
  TORCH_CHECK(scores.dim() == 2, "select_candidates: scores must be [N, C], got ", scores.sizes());
  const int64_t c = scores.size(1);
  const at::Tensor flat = scores.reshape(-1);
  at::Tensor idx = (flat > score_thr).nonzero().squeeze(1);
  at::Tensor kept = flat.index_select(0, idx);
  const int64_t k = top_k > 0 ? std::min<int64_t>(top_k, kept.numel()) : kept.numel();
  const auto top = kept.topk(k);
  Candidates out;
  out.scores = std::get<0>(top);
  idx = idx.index_select(0, std::get<1>(top));
  out.locations = idx.div(c, "floor");
  out.labels = idx.remainder(c);
  return out;
}

at::Tensor clip_boxes(const at::Tensor& boxes, double height, double width) {
  return at::stack({boxes.select(1, 0).clamp(0, width), boxes.select(1, 1).clamp(0, height),
                    boxes.select(1, 2).clamp(0, width), boxes.select(1, 3).clamp(0, height)},
                   1);
}

at::Tensor boxes_to_original(const at::Tensor& boxes, const ImageMeta& meta, bool clip) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "boxes_to_original: boxes must be [K, 4], got ", boxes.sizes());
  TORCH_CHECK(meta.scale_x > 0 && meta.scale_y > 0, "boxes_to_original: image ", meta.image_id,
              " has non-positive scale (", meta.scale_x, ", ", meta.scale_y, ")");
  auto c = boxes.to(at::kFloat).unbind(1);
  if (meta.flipped) {
    const double w = static_cast<double>(meta.input_hw[1]);
    const at::Tensor x1 = w - c[2];
    c[2] = w - c[0];
    c[0] = x1;
  }
  if (!clip) {
    return at::stack(
        {c[0] / meta.scale_x, c[1] / meta.scale_y, c[2] / meta.scale_x, c[3] / meta.scale_y}, 1);
  }
  const double ow = static_cast<double>(meta.original_hw[1]);
  const double oh = static_cast<double>(meta.original_hw[0]);
  return at::stack({(c[0] / meta.scale_x).clamp(0, ow), (c[1] / meta.scale_y).clamp(0, oh),
                    (c[2] / meta.scale_x).clamp(0, ow), (c[3] / meta.scale_y).clamp(0, oh)},
                   1);
}

std::array<int64_t, 2> padded_size(const Batch& batch) {
  if (!batch.images.defined() || batch.images.dim() != 4) return {0, 0};
  return {batch.images.size(2), batch.images.size(3)};
}

std::array<double, 2> input_size(const ImageMeta& meta, const std::array<int64_t, 2>& padded_hw) {
  TORCH_CHECK(
      (meta.input_hw[0] > 0 || padded_hw[0] > 0) && (meta.input_hw[1] > 0 || padded_hw[1] > 0),
      "image ", meta.image_id, " has no input size (meta.input_hw unset, no image batch)");
  return {static_cast<double>(meta.input_hw[0] > 0 ? meta.input_hw[0] : padded_hw[0]),
          static_cast<double>(meta.input_hw[1] > 0 ? meta.input_hw[1] : padded_hw[1])};
}

Detections finalize_detections(const at::Tensor& boxes, const at::Tensor& scores,
                               const at::Tensor& labels, const ImageMeta& meta,
                               const std::array<int64_t, 2>& padded_hw,
                               const PostProcessConfig& cfg) {
  const auto hw = input_size(meta, padded_hw);
  const at::Tensor cpu = boxes.to(at::kCPU, at::kFloat);
  const at::Tensor clipped = (cfg.clip ? clip_boxes(cpu, hw[0], hw[1]) : cpu).contiguous();
  const KeptDetections kept = remove_duplicates(clipped, scores, labels, cfg.nms, cfg.max_per_img);
  Detections det;
  det.boxes = boxes_to_original(clipped.index_select(0, kept.indices), meta, cfg.clip);
  det.scores = kept.scores;
  det.labels = labels.to(at::kCPU, at::kLong).index_select(0, kept.indices);
  return det;
}

}  // namespace setdet
