#include "setdet/engine/evaluator.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "setdet/distributed/process_group.h"

namespace setdet {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The detections of every rank, on rank 0 (empty elsewhere), in rank order.
std::vector<CocoDetection> gather_detections(dist::ProcessGroup& group,
                                             const std::vector<CocoDetection>& mine) {
  static_assert(std::is_trivially_copyable_v<CocoDetection>);
  std::string bytes(mine.size() * sizeof(CocoDetection), '\0');
  if (!mine.empty()) std::memcpy(bytes.data(), mine.data(), bytes.size());
  std::vector<CocoDetection> all;
  for (const auto& part : group.gather_bytes(bytes)) {
    const size_t n = part.size() / sizeof(CocoDetection);
    const size_t old = all.size();
    all.resize(old + n);
    if (n > 0) std::memcpy(all.data() + old, part.data(), n * sizeof(CocoDetection));
  }
  return all;
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
    if (label_to_category[l[i]] < 0) continue;  // a label without a category (label_map)
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
  dist::ProcessGroup* group = dist::current_process_group();
  if (group != nullptr && group->world_size() > 1) {
    result.detections = gather_detections(*group, result.detections);
    result.images = std::llround(group->all_reduce_sum({static_cast<double>(result.images)})[0]);
  }
  result.inference_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  if (dist::is_main_process()) result.coco = evaluate_coco(*data.gt, result.detections, data.params);
  if (group != nullptr && group->world_size() > 1) {
    std::vector<at::Tensor> stats{at::empty({12}, at::kDouble)};
    std::copy(result.coco.stats.begin(), result.coco.stats.end(), stats[0].data_ptr<double>());
    group->broadcast(stats);
    std::copy_n(stats[0].data_ptr<double>(), 12, result.coco.stats.begin());
  }
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
