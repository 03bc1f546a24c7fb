#include "setdet/data/coco_dataset.h"

#include <algorithm>
#include <filesystem>

#include "setdet/core/error.h"
#include "setdet/data/image_io.h"

namespace setdet {

CocoDetectionDataset::CocoDetectionDataset(CocoDetectionDatasetOptions options)
    : options_(std::move(options)) {
  auto coco = std::make_shared<CocoDataset>(
      options_.instances ? *options_.instances : load_coco_instances(options_.ann_file));
  coco->index();

  std::vector<size_t> order(coco->categories.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return coco->categories[a].id < coco->categories[b].id; });
  std::unordered_map<int64_t, int64_t> category_to_label;
  if (options_.label_is_category_id) {
    for (const auto& cat : coco->categories) {
      SETDET_CHECK(cat.id >= 0, options_.ann_file,
                   ": label_map category_id needs category ids >= 0, got ", cat.id);
      if (cat.id >= static_cast<int64_t>(label_to_category_.size())) {
        label_to_category_.resize(static_cast<size_t>(cat.id + 1), -1);
        class_names_.resize(static_cast<size_t>(cat.id + 1));
      }
      label_to_category_[static_cast<size_t>(cat.id)] = cat.id;
      class_names_[static_cast<size_t>(cat.id)] = cat.name;
      category_to_label.emplace(cat.id, cat.id);
    }
  } else {
    for (size_t label = 0; label < order.size(); ++label) {
      const auto& cat = coco->categories[order[label]];
      category_to_label.emplace(cat.id, static_cast<int64_t>(label));
      label_to_category_.push_back(cat.id);
      class_names_.push_back(cat.name);
    }
  }

  std::vector<Item> per_image(coco->images.size());
  for (size_t i = 0; i < per_image.size(); ++i) per_image[i].image = i;
  for (const auto& ann : coco->annotations) {
    const double w = ann.bbox[2], h = ann.bbox[3];
    if (ann.iscrowd || w < 1.0 || h < 1.0) continue;
    Item& item = per_image[coco->image_index.at(ann.image_id)];
    item.boxes.push_back({static_cast<float>(ann.bbox[0]), static_cast<float>(ann.bbox[1]),
                          static_cast<float>(ann.bbox[0] + w),
                          static_cast<float>(ann.bbox[1] + h)});
    item.labels.push_back(category_to_label.at(ann.category_id));
  }
  for (auto& item : per_image) {
    if (options_.filter_empty && item.boxes.empty()) continue;
    items_.push_back(std::move(item));
  }
  coco_ = std::move(coco);
}

int64_t CocoDetectionDataset::image_id(int64_t index) const {
  SETDET_CHECK(index >= 0 && index < size(), options_.ann_file, ": index ", index,
               " out of range (", size(), " images)");
  return coco_->images[items_[static_cast<size_t>(index)].image].id;
}

std::vector<int64_t> CocoDetectionDataset::target_labels(int64_t index) const {
  SETDET_CHECK(index >= 0 && index < size(), options_.ann_file, ": index ", index,
               " out of range (", size(), " images)");
  return items_[static_cast<size_t>(index)].labels;
}

std::string CocoDetectionDataset::image_path(int64_t index) const {
  SETDET_CHECK(index >= 0 && index < size(), options_.ann_file, ": index ", index,
               " out of range (", size(), " images)");
  const auto& image = coco_->images[items_[static_cast<size_t>(index)].image];
  return (std::filesystem::path(options_.img_dir) / image.file_name).string();
}

Sample CocoDetectionDataset::load(int64_t index) const {
  const std::string path = image_path(index);
  const Item& item = items_[static_cast<size_t>(index)];
  const CocoImage& info = coco_->images[item.image];
  Sample s;
  s.image = read_image(path);
  SETDET_CHECK(s.image.cols == info.width && s.image.rows == info.height, path, ": decoded size ",
               s.image.cols, "x", s.image.rows, " differs from ", info.width, "x", info.height,
               " in ", options_.ann_file);
  s.boxes = item.boxes;
  s.labels = item.labels;
  s.meta.image_id = info.id;
  s.meta.file = path;
  s.meta.original_hw = {s.image.rows, s.image.cols};
  s.meta.input_hw = s.meta.original_hw;
  s.meta.padded_hw = s.meta.original_hw;
  return s;
}

Sample CocoDetectionDataset::get(int64_t index, Rng& rng) const {
  Sample s = load(index);
  apply_pipeline(options_.pipeline, s, rng);
  return s;
}

std::string path_under_root(const std::string& root, const std::string& path) {
  if (root.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(root) / path).string();
}

CocoDetectionDatasetOptions coco_dataset_options(const Config& cfg) {
  const auto root = cfg.get<std::string>("data_root", "");
  CocoDetectionDatasetOptions options;
  options.ann_file = path_under_root(root, cfg.get<std::string>("ann_file"));
  options.img_dir = path_under_root(root, cfg.get<std::string>("img_dir"));
  if (cfg.has("pipeline")) options.pipeline = build_pipeline(cfg["pipeline"]);
  options.filter_empty = cfg.get<bool>("filter_empty", true);
  return options;
}

namespace {

std::shared_ptr<Dataset> build_coco_dataset(const Config& cfg) {
  cfg.check_keys({"ann_file", "img_dir", "data_root", "pipeline", "filter_empty", "label_map"});
  CocoDetectionDatasetOptions options = coco_dataset_options(cfg);
  const auto label_map = cfg.get<std::string>("label_map", "contiguous");
  SETDET_CHECK(label_map == "contiguous" || label_map == "category_id", cfg["label_map"].where(),
               ": expected 'contiguous' or 'category_id', got '", label_map, "'");
  options.label_is_category_id = label_map == "category_id";
  return std::make_shared<CocoDetectionDataset>(std::move(options));
}

SETDET_REGISTER(DatasetRegistry, "CocoDataset", build_coco_dataset);

}  // namespace

}  // namespace setdet
