// COCO instances (ground truth) and results (detections) files: read with simdjson, written
// atomically. Errors name the file, the JSON path (e.g. "annotations[12].bbox[2]") and the
// problem.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace setdet {

struct CocoImage {
  int64_t id = 0;
  std::string file_name;
  int64_t width = 0;
  int64_t height = 0;
};

struct CocoCategory {
  int64_t id = 0;
  std::string name;
  std::string supercategory;
};

struct CocoAnnotation {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // [x, y, w, h] pixels, as given
  double area = 0.0;             // the annotation's "area" field (mask area on COCO)
  bool iscrowd = false;
};

struct CocoDataset {
  std::string path;  // where it was read from ("" if built in memory)
  std::vector<CocoImage> images;
  std::vector<CocoAnnotation> annotations;
  std::vector<CocoCategory> categories;

  // Lookups, built by index(): id -> position in images / categories.
  std::unordered_map<int64_t, size_t> image_index;
  std::unordered_map<int64_t, size_t> category_index;
  void index();  // throws setdet::Error on duplicate image / category / annotation ids
};

struct CocoDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // [x, y, w, h] pixels
  double score = 0.0;
};

// Reads an instances JSON (images, annotations with bbox / area / iscrowd, categories).
CocoDataset load_coco_instances(const std::string& path);

// Reads a results JSON (a list of {image_id, category_id, bbox, score}). When gt is given, a
// result whose image_id is absent from gt is an error (pycocotools refuses these too).
std::vector<CocoDetection> load_coco_results(const std::string& path,
                                             const CocoDataset* gt = nullptr);

// Atomic writes (temp file + rename). Doubles are written with full round-trip precision.
void write_coco_results(const std::string& path, const std::vector<CocoDetection>& dets);
void write_coco_instances(const std::string& path, const CocoDataset& dataset);

}  // namespace setdet
