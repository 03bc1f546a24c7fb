// A synthetic detection dataset ("setdet shapes"): textured geometric shapes on noisy textured
// backgrounds, with overlaps and partial occlusion, written in COCO format. Every image is a pure
// function of (seed, split, index, size), so datasets are reproducible and generated in parallel.
//
// Annotation conventions:
// - bbox is the tight box of the FULL shape (amodal) in pixel-edge coordinates: a shape covering
//   columns 10..29 has x = 10, w = 20. Shapes never leave the image.
// - area is the number of VISIBLE pixels (like COCO's mask area), so it is below w * h.
// - Shapes are painted in annotation order, later ones on top. A placement that would leave an
//   earlier shape less than 35% visible, or whose box has IoU > 0.6 with an earlier box, is
//   rejected and re-drawn; so no object is more than 65% hidden and no unannotated fragments of
//   dropped shapes remain.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "setdet/core/io/coco.h"

namespace setdet {

// Shape classes; category id = position + 1.
const std::vector<std::string>& synthetic_class_names();

struct SyntheticLimits {
  static constexpr int kMinObjects = 5;
  static constexpr int kMaxObjects = 25;
  static constexpr int kMinSide = 12;  // each side of every box, pixels
  static constexpr int kMaxSide = 160;
  static constexpr double kMaxPairIou = 0.6;
  static constexpr double kMinVisibleFraction = 0.35;
};

struct SyntheticObject {
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // [x, y, w, h], full shape
  int64_t full_pixels = 0;       // pixels of the whole shape
  int64_t visible_pixels = 0;    // pixels not covered by later shapes (the COCO area)
};

struct SyntheticImage {
  cv::Mat image;  // [size, size] BGR, CV_8UC3
  cv::Mat owner;  // [size, size] CV_16SC1: index into `objects` of the shape on top, -1 if none
  std::vector<SyntheticObject> objects;
};

// Split streams: images of different splits never coincide.
enum class SyntheticSplit : uint64_t { kTrain = 0, kVal = 1 };

// Renders one image, size x size pixels (size >= 64). Box sides are at most
// min(kMaxSide, 5 * size / 8).
SyntheticImage render_synthetic_image(uint64_t seed, SyntheticSplit split, int64_t index, int size);

struct SyntheticOptions {
  std::string out_dir;
  int64_t num_train = 2000;
  int64_t num_val = 200;
  uint64_t seed = 0;
  int size = 256;
  std::string format = "jpg";  // "jpg" or "png"
  int jpeg_quality = 95;
};

struct SyntheticSummary {
  int64_t images = 0;
  int64_t annotations = 0;
  double seconds = 0.0;
};

// Shared by the synthetic generators.
// Checks size (64..4096), format (jpg / png) and JPEG quality (1..100); errors start with `what`.
void check_synthetic_image_options(const std::string& what, int size, const std::string& format,
                                   int jpeg_quality);
// Creates root/sub for each sub (and root); errors name the directory.
void create_directories(const std::filesystem::path& root, const std::vector<std::string>& subdirs);
// COCO instances of one split: categories class_names (ids 1..), images file_names (ids 1..,
// size x size), annotations from objects[i] of image i (area = visible pixels).
CocoDataset synthetic_coco_split(const std::vector<std::string>& class_names,
                                 const std::vector<std::string>& file_names,
                                 const std::vector<std::vector<SyntheticObject>>& objects,
                                 int size);

// Writes out_dir/{train,val}/NNNNNN.<format> and out_dir/annotations/instances_{train,val}.json
// (atomically). Images are rendered on setdet::num_threads() threads.
SyntheticSummary generate_synthetic_dataset(const SyntheticOptions& options);

}  // namespace setdet
