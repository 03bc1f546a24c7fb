// Runs a DetectorModel over validation batches and scores its detections with the COCO evaluator
// (pycocotools semantics, setdet/core/eval/coco_eval.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "setdet/core/eval/coco_eval.h"
#include "setdet/core/io/coco.h"
#include "setdet/engine/batch_source.h"
#include "setdet/models/detector.h"

namespace setdet {

struct EvalData {
  std::shared_ptr<BatchSource> source;     // unshuffled, one pass = the whole split
  std::shared_ptr<const CocoDataset> gt;   // ground truth of the same images
  std::vector<int64_t> label_to_category;  // contiguous label -> COCO category_id
  CocoEvalParams params;                   // pycocotools' defaults
};

struct EvalCallbacks {
  std::function<void()> before_iter;  // before each batch
  std::function<void()> after_iter;   // after each batch's predictions are converted
};

struct DetectorEvalResult {
  CocoEvalResult coco;
  std::vector<CocoDetection> detections;
  int64_t images = 0;
  double inference_seconds = 0.0;  // model forward + conversion
  double eval_seconds = 0.0;       // evaluate_coco
};

// One image's detections as COCO results: label -> category_id through `label_to_category`,
// xyxy -> [x, y, w, h] (w = x2 - x1, pixels of the original image). A label outside the map is
// an error naming the image; a label mapped to a negative category (none) is dropped.
std::vector<CocoDetection> to_coco_detections(const Detections& dets, int64_t image_id,
                                              const std::vector<int64_t>& label_to_category);

// Puts the model in eval mode under NoGradGuard, predicts every batch of one epoch of
// data.source, restores the previous train/eval mode and evaluates against data.gt.
// Data-parallel processes: each rank predicts its shard of the split (data.source), rank 0
// gathers the detections, evaluates and sends the stats to every rank (result.coco holds only
// the stats elsewhere; result.detections and result.images cover every rank on rank 0).
DetectorEvalResult evaluate_detector(DetectorModel& model, const EvalData& data,
                                     const EvalCallbacks& callbacks = {});

// The 12 summary stats by name ("AP", "AP50", ... as coco_stat_names()).
std::map<std::string, double> coco_stats_map(const CocoEvalResult& result);

}  // namespace setdet
