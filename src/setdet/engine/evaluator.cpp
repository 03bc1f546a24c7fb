#include "setdet/engine/evaluator.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>

namespace setdet {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<CocoDetection> to_coco_detections(const Detections& dets, int64_t image_id,
                                              const std::vector<int64_t>& label_to_category) {
  std::vector<CocoDetection> out;
  if (!dets.boxes.defined() || dets.boxes.numel() == 0) return out;
  TORCH_CHECK(dets.boxes.dim() == 2 && dets.boxes.size(1) == 4, "detections of image ", image_id,
              ": boxes should be [K, 4], got ", dets.boxes.sizes());
  const int64_t k = dets.boxes.size(0);
  TORCH_CHECK(dets.scores.numel() == k && dets.labels.numel() == k, "detections of image ",
              image_id, ": ", k, " boxes but ", dets.scores.numel(), " scores and ",
              dets.labels.numel(), " labels");
  const auto boxes = dets.boxes.to(at::kDouble).contiguous().cpu();
  const auto scores = dets.scores.to(at::kDouble).contiguous().cpu();
  const auto labels = dets.labels.to(at::kLong).contiguous().cpu();
  const double* b = boxes.data_ptr<double>();
  const double* s = scores.data_ptr<double>();
  const int64_t* l = labels.data_ptr<int64_t>();
  const auto num_labels = static_cast<int64_t>(label_to_category.size());
  out.reserve(k);
  for (int64_t i = 0; i < k; ++i) {
    TORCH_CHECK(l[i] >= 0 && l[i] < num_labels, "detections of image ", image_id, ": label ", l[i],
                " outside the dataset's ", num_labels, " classes");
    CocoDetection d;
    d.image_id = image_id;
    d.category_id = label_to_category[l[i]];
    d.bbox = {b[4 * i], b[4 * i + 1], b[4 * i + 2] - b[4 * i], b[4 * i + 3] - b[4 * i + 1]};
    d.score = s[i];
    out.push_back(d);
  }
  return out;
}

DetectorEvalResult evaluate_detector(DetectorModel& model, const EvalData& data,
                                     const EvalCallbacks& callbacks) {
  SETDET_CHECK(data.source && data.gt,
               "evaluate_detector: validation data and ground truth "
               "are required");
  DetectorEvalResult result;
  const bool was_training = model.is_training();
  model.eval();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    torch::NoGradGuard no_grad;
    data.source->start_epoch(0, 0);
    while (auto batch = data.source->next()) {
      if (callbacks.before_iter) callbacks.before_iter();
      const auto dets = model.predict(*batch);
      TORCH_CHECK(static_cast<int64_t>(dets.size()) == batch->size(), "predict returned ",
                  dets.size(), " results for a batch of ", batch->size(), " images");
      for (size_t i = 0; i < dets.size(); ++i) {
        auto coco = to_coco_detections(dets[i], batch->metas[i].image_id, data.label_to_category);
        result.detections.insert(result.detections.end(), coco.begin(), coco.end());
      }
      result.images += batch->size();
      if (callbacks.after_iter) callbacks.after_iter();
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  result.inference_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  result.coco = evaluate_coco(*data.gt, result.detections);
  result.eval_seconds = seconds_since(t1);
  return result;
}

std::map<std::string, double> coco_stats_map(const CocoEvalResult& result) {
  std::map<std::string, double> out;
  const auto& names = coco_stat_names();
  for (size_t i = 0; i < names.size(); ++i) out[names[i]] = result.stats[i];
  return out;
}

}  // namespace setdet
