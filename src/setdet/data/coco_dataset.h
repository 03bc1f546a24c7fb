// COCO-format detection dataset (config `type: CocoDataset`):
//
//   {type: CocoDataset, ann_file: annotations/instances_train.json, img_dir: train/,
//    data_root: data/shapes/ (optional prefix of relative ann_file / img_dir),
//    pipeline: [ {type: Resize, ...}, ... ], filter_empty: true, label_map: contiguous}
//
// label_map contiguous (default): categories are mapped to contiguous labels 0..C-1 in increasing
// category_id order. label_map category_id: the label is the category_id itself (0 .. max id;
// DETR-family models trained on COCO's ids 1..90 as 91 classes); labels without a category
// have the name "" and no category (their detections are not evaluated). As in
// MMDetection 2.x, crowd annotations and boxes with w < 1 or h < 1 are not training targets, and
// filter_empty drops images left without any box.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "setdet/data/dataset.h"

namespace setdet {

class Config;

struct CocoDetectionDatasetOptions {
  std::string ann_file;  // names the annotations in messages even when `instances` is given
  std::shared_ptr<const CocoDataset> instances;  // set: these annotations, ann_file is not read
  std::string img_dir;                           // file_name of each image is relative to this
  std::vector<std::shared_ptr<Transform>> pipeline;
  bool filter_empty = true;
  bool label_is_category_id = false;  // label_map: category_id
};

class CocoDetectionDataset : public Dataset {
 public:
  explicit CocoDetectionDataset(CocoDetectionDatasetOptions options);

  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  Sample get(int64_t index, Rng& rng) const override;
  const std::vector<std::string>& class_names() const override { return class_names_; }
  const std::vector<int64_t>& label_to_category() const override { return label_to_category_; }
  std::shared_ptr<const CocoDataset> ground_truth() const override { return coco_; }
  std::vector<int64_t> target_labels(int64_t index) const override;

  // The decoded image with its targets, before the pipeline (xyxy boxes, original pixels).
  Sample load(int64_t index) const;
  // COCO image id of item `index`.
  int64_t image_id(int64_t index) const;
  std::string image_path(int64_t index) const;

 private:
  struct Item {
    size_t image;  // position in coco_->images
    std::vector<std::array<float, 4>> boxes;
    std::vector<int64_t> labels;
  };

  CocoDetectionDatasetOptions options_;
  std::shared_ptr<const CocoDataset> coco_;
  std::vector<std::string> class_names_;
  std::vector<int64_t> label_to_category_;
  std::vector<Item> items_;
};

// `path` under a config's `data_root` (a relative path is joined to it; an absolute one or an empty
// root leaves it as it is).
std::string path_under_root(const std::string& root, const std::string& path);

// The options every COCO-based dataset config shares: ann_file and img_dir (under data_root),
// pipeline, filter_empty (default true). The caller checks the node's keys.
CocoDetectionDatasetOptions coco_dataset_options(const Config& cfg);

}  // namespace setdet
