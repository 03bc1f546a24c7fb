// The Open Images 2019 VRD winner's pipeline (seed 003, Sec. 2-3) on setdet:
//
//   stage 1  trained setdet detectors: object boxes (several fused by WBF) and, from a detector of
//            (class, attribute) classes initialised by partial weight transfer, "is" relationships;
//   stage 2  on candidate pairs of objects: per predicate a binary XGBoost model of the pair's
//            spatio-semantic features (vrd/pair_features.h), and a CNN on the pair's masked union
//            crop with one output per predicate (vrd/visual_model.h); trained on the training
//            split (by default on its ground-truth boxes, as the paper);
//   stage 3  per predicate a gbtree model over the stage-2 predictions, the pair's features and
//            the detection scores, trained on the held-apart split (val) — and, as the paper's
//            baseline, the plain average of the two stage-2 models.
//
// `setdet vrd train CONFIG` trains stages 2 and 3 (the stage-1 detectors are trained before with
// `setdet train`, see configs/vrd/), `setdet vrd predict CONFIG --out DT.csv` writes Open Images
// VRD detections. The config (docs/vrd.md has the stages and the demo):
//
//   work_dir: work_dirs/demo_vrd/pipeline
//   data: {root: DIR/, train: {instances, images, relationships}, val: {...}, test: {...}}
//   stage1: {objects: [{config, checkpoint, weight}], fusion: {iou_threshold, skip_box_threshold,
//            conf_type}, attributes: {config, checkpoint}, separator: ':', plain: plain,
//            score_threshold: 0.2, max_objects: 12, batch_size: 8, attribute_min_score: 0.01,
//            attribute_max_per_image: 100}
//   stage2: {boxes: gt | detections, validation_fraction: 0.15, negative_fraction: 1, seed: 0,
//            spatial: {booster: dart, max_depth: 10, ..., num_rounds, early_stopping_rounds},
//            visual: {backbone: {...}, init_backbone: {checkpoint, prefix}, crop_size: 112,
//                     mask: hull | boxes, hidden: [256, 128], dropout: 0.2, batch_size: 32,
//                     epochs: 2, max_iters: 0, autocast: auto,
//                     log_interval: 50, optimizer: {...}, lr_schedule: {...}}}
//   stage3: {boxes: detections | gt, validation_fraction: 0.25, seed: 0,
//            xgboost: {booster: gbtree, max_depth: 8, ...}}
//   output: {min_score: 0.0001, max_per_image: 300}
//
// Files in work_dir: stage2/pair_statistics.json, stage2/spatial_<predicate>.json (XGBoost JSON),
// stage2/visual.pt (setdet checkpoint), stage3/stage3_<predicate>.json and vrd_model.json (classes,
// predicates, feature names; written last). Every file is written atomically.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/core/dedup/wbf.h"
#include "setdet/vrd/object_detections.h"
#include "setdet/vrd/union_crop.h"
#include "setdet/vrd/visual_model.h"
#include "setdet/vrd/vrd_split.h"
#include "setdet/vrd/xgboost_model.h"

namespace setdet {

struct VrdPipelineConfig {
  std::string file;
  std::string yaml;  // the resolved config
  std::string work_dir;
  VrdSplitFiles train, val, test;

  // stage 1
  std::vector<VrdDetectorSpec> objects;
  WbfOptions fusion;
  std::optional<VrdDetectorSpec> attributes;
  std::string separator = ":";
  std::string plain = "plain";
  float score_threshold = 0.2f;
  int32_t max_objects = 12;
  int64_t detector_batch_size = 8;
  float attribute_min_score = 0.01f;
  int64_t attribute_max_per_image = 100;

  // stage 2
  bool stage2_gt_boxes = true;
  double stage2_validation_fraction = 0.15;
  uint64_t stage2_seed = 0;
  GbmOptions spatial;
  Config visual_backbone;
  std::string init_backbone_checkpoint, init_backbone_prefix = "backbone.body.";
  std::array<int64_t, 2> visual_hidden{256, 128};
  double visual_dropout = 0.2;
  // the pairs both stage-2 models train on: all with a relationship, this fraction of the others
  double negative_fraction = 1.0;
  VisualTrainOptions visual;

  // stage 3
  bool stage3_gt_boxes = false;
  double stage3_validation_fraction = 0.25;
  uint64_t stage3_seed = 0;
  GbmOptions stage3;

  // output
  float min_score = 1e-4f;
  int64_t max_per_image = 300;

  // Loads CONFIG with `overrides` ("key.path=value"); `work_dir` replaces the config's when set.
  // Unknown keys and bad values are errors naming the key path.
  static VrdPipelineConfig load(const std::string& file, const std::vector<std::string>& overrides,
                                const std::string& work_dir = "");
};

// The variants `vrd predict` scores, in this order.
const std::vector<std::string>& vrd_variants();  // spatial, visual, average, stage3

struct VrdTrainOptions {
  bool resume = false;  // load the models already in work_dir instead of training them again
};

// Trains stages 2 and 3 into config.work_dir, printing each stage's progress.
void train_vrd_pipeline(const VrdPipelineConfig& config, const VrdTrainOptions& options = {});

struct VrdPredictOptions {
  std::string split = "test";  // train | val | test
  std::string variant = "stage3";
  std::string out;           // DT.csv of `variant`
  std::string variants_dir;  // "": none; else dt_<variant>.csv for every variant
  std::string vis;           // "": none; else a PNG of the first vis_images images
  int64_t vis_images = 4;
  float vis_min_score = 0.5f;
};

// Runs every stage on a split with the models in config.work_dir and writes the detections.
void predict_vrd_pipeline(const VrdPipelineConfig& config, const VrdPredictOptions& options);

}  // namespace setdet
