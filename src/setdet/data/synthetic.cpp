#include "setdet/data/synthetic.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <opencv2/imgproc.hpp>

#include "setdet/core/error.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/parallel.h"
#include "setdet/data/image_io.h"
#include "setdet/data/random.h"
#include "setdet/data/synthetic_draw.h"

namespace setdet {
namespace {

using Limits = SyntheticLimits;
using namespace synthetic;

double box_iou(const cv::Rect& a, const cv::Rect& b) {
  const double inter = (a & b).area();
  return inter <= 0 ? 0.0 : inter / (a.area() + b.area() - inter);
}

}  // namespace

const std::vector<std::string>& synthetic_class_names() {
  static const std::vector<std::string> names{"circle", "ellipse", "square", "triangle",
                                              "star",   "cross",   "ring",   "hexagon"};
  return names;
}

SyntheticImage render_synthetic_image(uint64_t seed, SyntheticSplit split, int64_t index,
                                      int size) {
  SETDET_CHECK(size >= 64, "synthetic image size must be >= 64, got ", size);
  SETDET_CHECK(index >= 0, "synthetic image index must be >= 0, got ", index);
  Rng rng({seed, static_cast<uint64_t>(split), static_cast<uint64_t>(index)});
  SyntheticImage out;
  out.image = render_background(rng, size);
  cv::Mat& image = out.image;

  const int max_side = std::min(Limits::kMaxSide, 5 * size / 8);
  out.owner = cv::Mat(size, size, CV_16SC1, cv::Scalar(-1));
  CV_Assert(out.owner.isContinuous());
  int16_t* owner = out.owner.ptr<int16_t>();
  std::vector<cv::Rect> boxes;
  std::vector<int64_t> hidden;

  const auto target = rng.randint(Limits::kMinObjects, Limits::kMaxObjects);
  constexpr int kAttempts = 60;
  for (int64_t k = 0; k < target; ++k) {
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      const int shape = static_cast<int>(rng.randint(0, kNumShapes - 1));
      const Outline outline = unit_outline(shape, rng);
      const auto e = extent(outline);
      const double aspect = std::min(e[2] - e[0], e[3] - e[1]) / std::max(e[2] - e[0], e[3] - e[1]);
      const double lo = (Limits::kMinSide + 1.0) / aspect;
      // later attempts draw smaller shapes, which fit more easily
      const double hi = std::max(lo + 1.0, (max_side - 2.0) * std::pow(0.93, attempt));
      const ShapeMask shape_mask = rasterise(outline, rng.log_uniform(lo, hi));
      const cv::Rect& sb = shape_mask.box;
      if (sb.width < Limits::kMinSide || sb.height < Limits::kMinSide || sb.width > max_side ||
          sb.height > max_side) {
        continue;
      }
      // image position of the shape's box
      int x0 = static_cast<int>(rng.randint(0, size - sb.width));
      int y0 = static_cast<int>(rng.randint(0, size - sb.height));
      if (!boxes.empty() && rng.bernoulli(0.35)) {  // seek overlap with an earlier shape
        const cv::Rect& other = boxes[rng.randint(0, static_cast<int64_t>(boxes.size()) - 1)];
        const double cx =
            other.x + other.width / 2.0 + rng.uniform(-0.5, 0.5) * 0.7 * (other.width + sb.width);
        const double cy = other.y + other.height / 2.0 +
                          rng.uniform(-0.5, 0.5) * 0.7 * (other.height + sb.height);
        x0 = std::clamp(static_cast<int>(std::lround(cx - sb.width / 2.0)), 0, size - sb.width);
        y0 = std::clamp(static_cast<int>(std::lround(cy - sb.height / 2.0)), 0, size - sb.height);
      }
      const cv::Rect box(x0, y0, sb.width, sb.height);
      bool ok = true;
      for (const auto& b : boxes) {
        if (box_iou(box, b) > Limits::kMaxPairIou) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      // pixels of each earlier shape this one would cover
      std::vector<int64_t> covered(boxes.size(), 0);
      for (int y = 0; y < sb.height; ++y) {
        const uchar* m = shape_mask.mask.ptr<uchar>(sb.y + y) + sb.x;
        const int16_t* o = owner + static_cast<size_t>(y0 + y) * size + x0;
        for (int x = 0; x < sb.width; ++x) {
          if (m[x] && o[x] >= 0) ++covered[o[x]];
        }
      }
      for (size_t j = 0; j < boxes.size() && ok; ++j) {
        const auto& obj = out.objects[j];
        const int64_t visible = obj.full_pixels - hidden[j] - covered[j];
        ok = visible >= Limits::kMinVisibleFraction * obj.full_pixels;
      }
      if (!ok) continue;

      // accepted: colours that stand out from what lies beneath, then paint
      const cv::Mat mask_roi = shape_mask.mask(sb);
      const cv::Scalar under = cv::mean(image(box), mask_roi);
      cv::Vec3b a = random_colour(rng);
      for (int tries = 0; tries < 16; ++tries) {
        const double d =
            std::abs(a[0] - under[0]) + std::abs(a[1] - under[1]) + std::abs(a[2] - under[2]);
        if (d >= 120) break;
        a = random_colour(rng);
      }
      const cv::Vec3b b = mix(a, random_colour(rng), static_cast<float>(rng.uniform(0.4, 1.0)));
      const Texture texture(rng, sb.width, sb.height);
      paint_shape(image, out.owner, shape_mask, {x0, y0}, texture, a, b,
                  static_cast<int16_t>(boxes.size()));
      for (size_t j = 0; j < boxes.size(); ++j) hidden[j] += covered[j];
      boxes.push_back(box);
      hidden.push_back(0);
      SyntheticObject obj;
      obj.category_id = shape + 1;
      obj.bbox = {static_cast<double>(box.x), static_cast<double>(box.y),
                  static_cast<double>(box.width), static_cast<double>(box.height)};
      obj.full_pixels = shape_mask.pixels;
      out.objects.push_back(obj);
      break;
    }
  }
  for (size_t j = 0; j < out.objects.size(); ++j) {
    out.objects[j].visible_pixels = out.objects[j].full_pixels - hidden[j];
  }

  if (rng.bernoulli(0.25)) cv::GaussianBlur(image, image, cv::Size(3, 3), rng.uniform(0.5, 1.0));
  add_noise_and_light(image, rng);
  return out;
}

void check_synthetic_image_options(const std::string& what, int size, const std::string& format,
                                   int jpeg_quality) {
  SETDET_CHECK(size >= 64 && size <= 4096, what, ": size must be in [64, 4096], got ", size);
  SETDET_CHECK(format == "jpg" || format == "png", what, ": format must be 'jpg' or 'png', got '",
               format, "'");
  SETDET_CHECK(jpeg_quality >= 1 && jpeg_quality <= 100, what,
               ": jpeg quality must be in [1, 100], got ", jpeg_quality);
}

void create_directories(const std::filesystem::path& root,
                        const std::vector<std::string>& subdirs) {
  for (const auto& sub : subdirs) {
    std::error_code ec;
    std::filesystem::create_directories(root / sub, ec);
    SETDET_CHECK(!ec, (root / sub).string(), ": cannot create directory (", ec.message(), ")");
  }
}

CocoDataset synthetic_coco_split(const std::vector<std::string>& class_names,
                                 const std::vector<std::string>& file_names,
                                 const std::vector<std::vector<SyntheticObject>>& objects,
                                 int size) {
  CocoDataset ds;
  for (size_t c = 0; c < class_names.size(); ++c) {
    ds.categories.push_back({static_cast<int64_t>(c + 1), class_names[c], "shape"});
  }
  int64_t ann_id = 1;
  for (size_t i = 0; i < file_names.size(); ++i) {
    CocoImage im;
    im.id = static_cast<int64_t>(i) + 1;
    im.file_name = file_names[i];
    im.width = size;
    im.height = size;
    ds.images.push_back(im);
    for (const auto& obj : objects[i]) {
      CocoAnnotation ann;
      ann.id = ann_id++;
      ann.image_id = im.id;
      ann.category_id = obj.category_id;
      ann.bbox = obj.bbox;
      ann.area = static_cast<double>(obj.visible_pixels);
      ds.annotations.push_back(ann);
    }
  }
  return ds;
}

SyntheticSummary generate_synthetic_dataset(const SyntheticOptions& options) {
  namespace fs = std::filesystem;
  SETDET_CHECK(!options.out_dir.empty(), "synthetic dataset: --out must name a directory");
  SETDET_CHECK(options.num_train >= 0 && options.num_val >= 0,
               "synthetic dataset: image counts must be >= 0, got num_train=", options.num_train,
               " num_val=", options.num_val);
  SETDET_CHECK(options.num_train + options.num_val > 0,
               "synthetic dataset: nothing to generate (num_train = num_val = 0)");
  check_synthetic_image_options("synthetic dataset", options.size, options.format,
                                options.jpeg_quality);

  const auto start = std::chrono::steady_clock::now();
  const fs::path root(options.out_dir);
  create_directories(root, {"train", "val", "annotations"});

  ScopedOpenCvSerial serial;
  SyntheticSummary summary;
  const struct {
    const char* name;
    SyntheticSplit split;
    int64_t count;
  } splits[] = {{"train", SyntheticSplit::kTrain, options.num_train},
                {"val", SyntheticSplit::kVal, options.num_val}};
  for (const auto& sp : splits) {
    std::vector<std::vector<SyntheticObject>> objects(static_cast<size_t>(sp.count));
    std::vector<std::string> names(static_cast<size_t>(sp.count));
    parallel_for(0, sp.count, 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "%06lld.%s", static_cast<long long>(i),
                      options.format.c_str());
        SyntheticImage img = render_synthetic_image(options.seed, sp.split, i, options.size);
        write_image((root / sp.name / name).string(), img.image, options.jpeg_quality);
        objects[i] = std::move(img.objects);
        names[i] = name;
      }
    });

    const CocoDataset ds =
        synthetic_coco_split(synthetic_class_names(), names, objects, options.size);
    summary.images += sp.count;
    summary.annotations += static_cast<int64_t>(ds.annotations.size());
    write_coco_instances(
        (root / "annotations" / (std::string("instances_") + sp.name + ".json")).string(), ds);
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace setdet
