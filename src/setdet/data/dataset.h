// Detection datasets: indexable collections of images with boxes, read on the loader's worker
// threads. Built from config nodes `{type: CocoDataset, ...}` through DatasetRegistry().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "setdet/config/registry.h"
#include "setdet/core/io/coco.h"
#include "setdet/data/random.h"
#include "setdet/data/transforms.h"

namespace setdet {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Decodes item `index` and runs the dataset's pipeline with `rng`. Thread-safe.
  virtual Sample get(int64_t index, Rng& rng) const = 0;
  // Class names by contiguous label 0..C-1.
  virtual const std::vector<std::string>& class_names() const = 0;
  // COCO category_id of each contiguous label (what the evaluator writes back).
  virtual const std::vector<int64_t>& label_to_category() const = 0;
  // The ground truth in COCO form (for evaluation), covering at least the items of this dataset.
  virtual std::shared_ptr<const CocoDataset> ground_truth() const = 0;
  // The labels of item `index`'s targets, without decoding the image (samplers read them).
  virtual std::vector<int64_t> target_labels(int64_t index) const {
    SETDET_CHECK(false, "this dataset does not list the labels of item ", index,
                 " without loading it (a sampler needs them)");
    return {};
  }
  int64_t num_classes() const { return static_cast<int64_t>(class_names().size()); }
};

// Builders return a dataset ready to index (annotations loaded, pipeline built).
SETDET_DEFINE_REGISTRY(DatasetRegistry, std::shared_ptr<Dataset>, "dataset")

}  // namespace setdet
