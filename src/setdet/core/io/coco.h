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
  bool iscrowd = false;          // read as 0 when the key is absent (pycocotools needs the key)
};

struct CocoDataset {
  std::string path;  // where it was read from ("" if built in memory)
  std::vector<CocoImage> images;
  std::vector<CocoAnnotation> annotations;
  std::vector<CocoCategory> categories;

  // Lookups, built by index(): id -> position in images / categories.
  std::unordered_map<int64_t, size_t> image_index;
  std::unordered_map<int64_t, size_t> category_index;
  // Throws setdet::Error on duplicate image / category / annotation ids and on annotations
  // whose image_id / category_id is not among images / categories.
  void index();
};

struct CocoDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // [x, y, w, h] pixels
  double score = 0.0;
};

// Reads an instances JSON (images, annotations with bbox / area / iscrowd, categories) and
// calls index(). Required: images[].id; annotations[].{id, image_id, category_id, bbox, area};
// categories[].id. Numbers may be integers or floats (ids must have integral values); bbox
// widths / heights and areas must be >= 0 and finite; other keys (segmentation, info, ...) are
// skipped. Errors read "<path>: annotations[12].bbox[2]: width must be >= 0, got -3".
CocoDataset load_coco_instances(const std::string& path);

// Reads a results JSON (a list of {image_id, category_id, bbox, score}; other keys skipped).
// When gt is given, a result whose image_id (or category_id) is absent from gt is an error
// (pycocotools refuses unknown images too). Errors read "<path>: [17].score: ...".
std::vector<CocoDetection> load_coco_results(const std::string& path,
                                             const CocoDataset* gt = nullptr);

// Atomic writes (temp file + rename). Doubles are written with full round-trip precision.
void write_coco_results(const std::string& path, const std::vector<CocoDetection>& dets);
void write_coco_instances(const std::string& path, const CocoDataset& dataset);

}  // namespace setdet
