#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <opencv2/core.hpp>
#include <set>
#include <sstream>

#include "setdet/core/error.h"
#include "setdet/core/io/coco.h"
#include "setdet/data/random.h"
#include "setdet/data/synthetic.h"
#include "testing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;
using Limits = SyntheticLimits;

using test_util::read_bytes;
using test_util::TempDir;

double iou_xywh(const std::array<double, 4>& a, const std::array<double, 4>& b) {
  const double iw = std::min(a[0] + a[2], b[0] + b[2]) - std::max(a[0], b[0]);
  const double ih = std::min(a[1] + a[3], b[1] + b[3]) - std::max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0.0;
  const double inter = iw * ih;
  return inter / (a[2] * a[3] + b[2] * b[3] - inter);
}

TEST(Rng, SameKeysSameStreamDifferentKeysDifferentStream) {
  Rng a({1, 2, 3}), b({1, 2, 3}), c({1, 2, 4}), d({2, 1, 3});
  int same_c = 0, same_d = 0;
  for (int i = 0; i < 100; ++i) {
    const uint64_t va = a.next(), vb = b.next();
    EXPECT_EQ(va, vb);
    same_c += va == c.next();
    same_d += va == d.next();
  }
  EXPECT_EQ(same_c, 0);
  EXPECT_EQ(same_d, 0);
}

TEST(Rng, RandintCoversItsInclusiveRangeUniformly) {
  Rng rng({7});
  std::vector<int> counts(6, 0);
  const int n = 60000;
  for (int i = 0; i < n; ++i) {
    const int64_t v = rng.randint(-2, 3);
    ASSERT_GE(v, -2);
    ASSERT_LE(v, 3);
    ++counts[static_cast<size_t>(v + 2)];
  }
  for (int c : counts) EXPECT_NEAR(c, n / 6.0, 0.05 * n / 6.0);
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    sum += z;
    sum2 += z * z;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.02);
  EXPECT_NEAR(sum2 / n, 1.0, 0.03);
}

TEST(Synthetic, ImagesRespectTheDocumentedLimits) {
  std::set<int64_t> categories;
  int64_t overlapping_pairs = 0, occluded = 0;
  for (int64_t index = 0; index < 150; ++index) {
    const SyntheticImage img = render_synthetic_image(3, SyntheticSplit::kTrain, index, 256);
    ASSERT_EQ(img.image.rows, 256);
    ASSERT_EQ(img.image.cols, 256);
    ASSERT_EQ(img.image.type(), CV_8UC3);
    const auto n = static_cast<int64_t>(img.objects.size());
    EXPECT_GE(n, Limits::kMinObjects) << "image " << index;
    EXPECT_LE(n, Limits::kMaxObjects) << "image " << index;
    for (int64_t j = 0; j < n; ++j) {
      const auto& o = img.objects[j];
      categories.insert(o.category_id);
      EXPECT_GE(o.category_id, 1);
      EXPECT_LE(o.category_id, static_cast<int64_t>(synthetic_class_names().size()));
      EXPECT_GE(o.bbox[0], 0);
      EXPECT_GE(o.bbox[1], 0);
      EXPECT_LE(o.bbox[0] + o.bbox[2], 256);
      EXPECT_LE(o.bbox[1] + o.bbox[3], 256);
      EXPECT_GE(o.bbox[2], Limits::kMinSide);
      EXPECT_GE(o.bbox[3], Limits::kMinSide);
      EXPECT_LE(o.bbox[2], Limits::kMaxSide);
      EXPECT_LE(o.bbox[3], Limits::kMaxSide);
      EXPECT_LE(o.full_pixels, o.bbox[2] * o.bbox[3]);
      EXPECT_LE(o.visible_pixels, o.full_pixels);
      EXPECT_GE(o.visible_pixels, Limits::kMinVisibleFraction * o.full_pixels);
      occluded += o.visible_pixels < o.full_pixels;
      for (int64_t k = j + 1; k < n; ++k) {
        const double iou = iou_xywh(o.bbox, img.objects[k].bbox);
        EXPECT_LE(iou, Limits::kMaxPairIou + 1e-12);
        overlapping_pairs += iou > 0.0;
      }
    }
  }
  EXPECT_EQ(categories.size(), synthetic_class_names().size());
  EXPECT_GT(overlapping_pairs, 150);  // overlaps are common, not accidental
  EXPECT_GT(occluded, 150);
}

TEST(Synthetic, BoxesAreTightAndAreaIsTheVisiblePixelCount) {
  for (int64_t index = 0; index < 40; ++index) {
    const SyntheticImage img = render_synthetic_image(11, SyntheticSplit::kVal, index, 256);
    const auto n = img.objects.size();
    std::vector<int64_t> visible(n, 0);
    std::vector<std::array<int, 4>> extent(n, {1 << 30, 1 << 30, -1, -1});  // x0 y0 x1 y1
    for (int y = 0; y < img.owner.rows; ++y) {
      for (int x = 0; x < img.owner.cols; ++x) {
        const int16_t j = img.owner.at<int16_t>(y, x);
        if (j < 0) continue;
        ASSERT_LT(static_cast<size_t>(j), n);
        ++visible[j];
        auto& e = extent[j];
        e = {std::min(e[0], x), std::min(e[1], y), std::max(e[2], x), std::max(e[3], y)};
      }
    }
    for (size_t j = 0; j < n; ++j) {
      const auto& o = img.objects[j];
      EXPECT_EQ(visible[j], o.visible_pixels);
      // visible pixels lie inside the (full-shape) box
      EXPECT_GE(extent[j][0], o.bbox[0]);
      EXPECT_GE(extent[j][1], o.bbox[1]);
      EXPECT_LT(extent[j][2], o.bbox[0] + o.bbox[2]);
      EXPECT_LT(extent[j][3], o.bbox[1] + o.bbox[3]);
      if (o.visible_pixels == o.full_pixels) {  // unoccluded: the box is exactly the pixel extent
        EXPECT_EQ(extent[j][0], o.bbox[0]);
        EXPECT_EQ(extent[j][1], o.bbox[1]);
        EXPECT_EQ(extent[j][2] + 1, o.bbox[0] + o.bbox[2]);
        EXPECT_EQ(extent[j][3] + 1, o.bbox[1] + o.bbox[3]);
      }
    }
  }
}

TEST(Synthetic, RenderingIsAFunctionOfSeedSplitAndIndex) {
  const auto a = render_synthetic_image(5, SyntheticSplit::kTrain, 17, 256);
  const auto b = render_synthetic_image(5, SyntheticSplit::kTrain, 17, 256);
  EXPECT_EQ(cv::norm(a.image, b.image, cv::NORM_INF), 0.0);
  ASSERT_EQ(a.objects.size(), b.objects.size());
  for (size_t j = 0; j < a.objects.size(); ++j) {
    EXPECT_EQ(a.objects[j].bbox, b.objects[j].bbox);
    EXPECT_EQ(a.objects[j].category_id, b.objects[j].category_id);
    EXPECT_EQ(a.objects[j].visible_pixels, b.objects[j].visible_pixels);
  }
  for (const auto& other : {render_synthetic_image(6, SyntheticSplit::kTrain, 17, 256),
                            render_synthetic_image(5, SyntheticSplit::kVal, 17, 256),
                            render_synthetic_image(5, SyntheticSplit::kTrain, 18, 256)}) {
    EXPECT_GT(cv::norm(a.image, other.image, cv::NORM_L1), 0.0);
  }
}

TEST(Synthetic, RejectsBadSizes) {
  EXPECT_THROW(render_synthetic_image(0, SyntheticSplit::kTrain, 0, 32), Error);
  SyntheticOptions o;
  o.out_dir = "";
  EXPECT_THROW(generate_synthetic_dataset(o), Error);
}

TEST(Synthetic, WritesACocoDatasetDeterministically) {
  TempDir a("data_synth_a"), b("data_synth_b"), c("data_synth_c");
  SyntheticOptions o;
  o.num_train = 9;
  o.num_val = 4;
  o.seed = 42;
  o.size = 128;
  o.format = "png";
  for (const auto* dir : {&a, &b}) {
    o.out_dir = dir->path.string();
    const auto summary = generate_synthetic_dataset(o);
    EXPECT_EQ(summary.images, 13);
  }
  o.out_dir = c.path.string();
  o.seed = 43;
  generate_synthetic_dataset(o);

  for (const char* split : {"train", "val"}) {
    const auto ann = fs::path("annotations") / (std::string("instances_") + split + ".json");
    const CocoDataset ds = load_coco_instances((a.path / ann).string());
    EXPECT_EQ(ds.images.size(), std::string(split) == "train" ? 9u : 4u);
    EXPECT_EQ(ds.categories.size(), synthetic_class_names().size());
    EXPECT_GE(ds.annotations.size(), ds.images.size() * Limits::kMinObjects);
    EXPECT_LE(ds.annotations.size(), ds.images.size() * Limits::kMaxObjects);
    for (const auto& ann_ : ds.annotations) {
      EXPECT_LE(ann_.bbox[0] + ann_.bbox[2], 128);
      EXPECT_LE(ann_.bbox[1] + ann_.bbox[3], 128);
      EXPECT_GT(ann_.area, 0);
      EXPECT_LE(ann_.area, ann_.bbox[2] * ann_.bbox[3]);
    }
    EXPECT_EQ(read_bytes(a.path / ann), read_bytes(b.path / ann));
    EXPECT_NE(read_bytes(a.path / ann), read_bytes(c.path / ann));
    for (const auto& im : ds.images) {
      const auto file = fs::path(split) / im.file_name;
      ASSERT_TRUE(fs::exists(a.path / file)) << file;
      EXPECT_EQ(read_bytes(a.path / file), read_bytes(b.path / file)) << file;
      EXPECT_NE(read_bytes(a.path / file), read_bytes(c.path / file)) << file;
    }
  }
}

}  // namespace
}  // namespace setdet
