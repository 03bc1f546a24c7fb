#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "setdet/core/io/coco.h"
#include "setdet/core/parallel.h"
#include "setdet/data/coco_dataset.h"
#include "setdet/data/loader.h"
#include "setdet/data/synthetic.h"
#include "testing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

using test_util::error_of;

// A small synthetic dataset (23 train / 5 val images of 96 px), generated once per process.
class LoaderTest : public ::testing::Test {
 protected:
  static fs::path root_;

  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("setdet_data_loader_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    SyntheticOptions o;
    o.out_dir = root_.string();
    o.num_train = 23;
    o.num_val = 5;
    o.seed = 1;
    o.size = 96;
    generate_synthetic_dataset(o);
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string loader_yaml(int workers, uint64_t seed, const std::string& extra = "") {
    return "batch_size: 4\nnum_workers: " + std::to_string(workers) +
           "\nprefetch: 2\nseed: " + std::to_string(seed) + "\n" + extra +
           "dataset:\n  type: CocoDataset\n  data_root: '" + root_.string() +
           "'\n  ann_file: annotations/instances_train.json\n  img_dir: train\n"
           "  pipeline:\n"
           "    - {type: Resize, scale: [[80, 80], [112, 112]], multiscale_mode: range}\n"
           "    - {type: RandomFlip, prob: 0.5}\n"
           "    - {type: Normalize, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, "
           "57.375]}\n"
           "    - {type: Pad, size_divisor: 32}\n";
  }

  static std::vector<Batch> epoch(DataLoader& loader, int64_t e, int64_t first = 0) {
    loader.start_epoch(e, first);
    std::vector<Batch> out;
    while (auto b = loader.next()) out.push_back(std::move(*b));
    return out;
  }
};
fs::path LoaderTest::root_;

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].images.equal(b[i].images)) << "batch " << i;
    ASSERT_EQ(a[i].size(), b[i].size());
    for (int64_t j = 0; j < a[i].size(); ++j) {
      EXPECT_TRUE(a[i].boxes[j].equal(b[i].boxes[j]));
      EXPECT_TRUE(a[i].labels[j].equal(b[i].labels[j]));
      EXPECT_EQ(a[i].metas[j].image_id, b[i].metas[j].image_id);
      EXPECT_EQ(a[i].metas[j].flipped, b[i].metas[j].flipped);
      EXPECT_EQ(a[i].metas[j].input_hw, b[i].metas[j].input_hw);
    }
  }
}

std::vector<int64_t> image_ids(const std::vector<Batch>& batches) {
  std::vector<int64_t> ids;
  for (const auto& b : batches) {
    for (const auto& m : b.metas) ids.push_back(m.image_id);
  }
  return ids;
}

TEST_F(LoaderTest, BatchesAreIdenticalWhateverTheNumberOfWorkers) {
  auto l0 = DataLoader::from_config(Config::parse(loader_yaml(0, 7)));
  auto l1 = DataLoader::from_config(Config::parse(loader_yaml(1, 7)));
  auto l3 = DataLoader::from_config(Config::parse(loader_yaml(3, 7)));
  for (int64_t e : {0, 1}) {
    const auto b0 = epoch(*l0, e);
    ASSERT_EQ(b0.size(), 6u);  // 23 images in batches of 4
    expect_same_batches(b0, epoch(*l1, e));
    expect_same_batches(b0, epoch(*l3, e));
  }
}

TEST_F(LoaderTest, WorkerCountIsCappedWithAMessage) {
  const int64_t cap = 4 * available_cores();
  testing::internal::CaptureStderr();
  auto huge = DataLoader::from_config(Config::parse(loader_yaml(100000, 7), "w.yaml"));
  const std::string note = testing::internal::GetCapturedStderr();
  EXPECT_NE(note.find("setdet: w.yaml: num_workers 100000 is more than the " + std::to_string(cap) +
                      " allowed here"),
            std::string::npos)
      << note;
  EXPECT_EQ(huge->options().num_workers, cap);
  auto l0 = DataLoader::from_config(Config::parse(loader_yaml(0, 7)));
  expect_same_batches(epoch(*l0, 0), epoch(*huge, 0));
}

TEST_F(LoaderTest, BatchLayoutAndTargets) {
  auto loader = DataLoader::from_config(Config::parse(loader_yaml(2, 3)));
  const auto batches = epoch(*loader, 0);
  ASSERT_EQ(batches.size(), 6u);
  EXPECT_EQ(batches.back().size(), 3);  // no drop_last
  std::set<int64_t> ids;
  int flipped = 0;
  for (const auto& b : batches) {
    ASSERT_EQ(b.images.dim(), 4);
    EXPECT_EQ(b.images.scalar_type(), at::kFloat);
    EXPECT_EQ(b.images.size(1), 3);
    EXPECT_EQ(b.images.size(2) % 32, 0);
    EXPECT_EQ(b.images.size(3) % 32, 0);
    for (int64_t j = 0; j < b.size(); ++j) {
      const auto& m = b.metas[j];
      ids.insert(m.image_id);
      flipped += m.flipped;
      EXPECT_EQ(m.original_hw, (std::array<int64_t, 2>{96, 96}));
      EXPECT_GE(m.input_hw[0], 80);
      EXPECT_LE(m.input_hw[0], 112);
      EXPECT_EQ(m.input_hw[0], m.input_hw[1]);
      EXPECT_DOUBLE_EQ(m.scale_x, m.input_hw[1] / 96.0);
      EXPECT_EQ(m.padded_hw, (std::array<int64_t, 2>{b.images.size(2), b.images.size(3)}));
      // zero padding right of and below the image
      const at::Tensor img = b.images[j];
      EXPECT_EQ(
          img.narrow(2, m.input_hw[1], b.images.size(3) - m.input_hw[1]).abs().max().item<float>(),
          0.f);
      EXPECT_EQ(
          img.narrow(1, m.input_hw[0], b.images.size(2) - m.input_hw[0]).abs().max().item<float>(),
          0.f);
      EXPECT_GT(
          img.narrow(1, 0, m.input_hw[0]).narrow(2, 0, m.input_hw[1]).abs().sum().item<float>(),
          0.f);
      const at::Tensor boxes = b.boxes[j];
      ASSERT_EQ(boxes.size(1), 4);
      EXPECT_EQ(boxes.size(0), b.labels[j].size(0));
      EXPECT_GE(boxes.size(0), 5);
      EXPECT_GE(boxes.min().item<float>(), 0.f);
      EXPECT_LE(boxes.select(1, 2).max().item<float>(), m.input_hw[1]);
      EXPECT_LE(boxes.select(1, 3).max().item<float>(), m.input_hw[0]);
      EXPECT_TRUE((boxes.select(1, 2) > boxes.select(1, 0)).all().item<bool>());
      EXPECT_GE(b.labels[j].min().item<int64_t>(), 0);
      EXPECT_LT(b.labels[j].max().item<int64_t>(), 8);
    }
  }
  EXPECT_EQ(ids.size(), 23u);  // every image once
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 23);
}

TEST_F(LoaderTest, OrderDependsOnSeedAndEpochAndResumesMidEpoch) {
  auto a = DataLoader::from_config(Config::parse(loader_yaml(2, 7)));
  auto b = DataLoader::from_config(Config::parse(loader_yaml(2, 8)));
  const auto a0 = epoch(*a, 0);
  EXPECT_NE(image_ids(a0), image_ids(epoch(*b, 0)));
  EXPECT_NE(image_ids(a0), image_ids(epoch(*a, 1)));
  const auto resumed = epoch(*a, 0, 2);
  expect_same_batches(std::vector<Batch>(a0.begin() + 2, a0.end()), resumed);
  // stopping an epoch half way and starting another is fine
  a->start_epoch(3);
  ASSERT_TRUE(a->next().has_value());
  EXPECT_EQ(epoch(*a, 0).size(), 6u);

  auto ordered = DataLoader::from_config(Config::parse(loader_yaml(1, 7, "shuffle: false\n")));
  const auto ids = image_ids(epoch(*ordered, 5));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  auto dropping = DataLoader::from_config(Config::parse(loader_yaml(1, 7, "drop_last: true\n")));
  EXPECT_EQ(dropping->batches_per_epoch(), 5);
}

TEST_F(LoaderTest, CocoDatasetMapsCategoriesToContiguousLabels) {
  auto ds = DatasetRegistry().build(Config::parse(
      "{type: CocoDataset, ann_file: '" + (root_ / "annotations/instances_val.json").string() +
      "', img_dir: '" + (root_ / "val").string() + "'}"));
  EXPECT_EQ(ds->size(), 5);
  EXPECT_EQ(ds->class_names(), synthetic_class_names());
  EXPECT_EQ(ds->label_to_category(), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  ASSERT_NE(ds->ground_truth(), nullptr);
  EXPECT_EQ(ds->ground_truth()->images.size(), 5u);
  Rng rng({0});
  const Sample s = ds->get(0, rng);  // no pipeline: the decoded image and JSON boxes as xyxy
  EXPECT_EQ(s.image.type(), CV_8UC3);
  const auto& gt = *ds->ground_truth();
  size_t n = 0;
  for (const auto& ann : gt.annotations) {
    if (ann.image_id != s.meta.image_id) continue;
    ASSERT_LT(n, s.boxes.size());
    EXPECT_FLOAT_EQ(s.boxes[n][0], ann.bbox[0]);
    EXPECT_FLOAT_EQ(s.boxes[n][2], ann.bbox[0] + ann.bbox[2]);
    EXPECT_EQ(s.labels[n], ann.category_id - 1);
    ++n;
  }
  EXPECT_EQ(n, s.boxes.size());
}

TEST_F(LoaderTest, HandMadeCategoriesCrowdAndEmptyImages) {
  const fs::path dir = root_ / "hand";
  fs::create_directories(dir);
  cv::imwrite((dir / "a.png").string(), cv::Mat(20, 30, CV_8UC3, cv::Scalar(1, 2, 3)));
  cv::imwrite((dir / "b.png").string(), cv::Mat(20, 30, CV_8UC3, cv::Scalar(4, 5, 6)));
  CocoDataset c;
  c.images = {{1, "a.png", 30, 20}, {2, "b.png", 30, 20}};
  c.categories = {{12, "twelve", ""}, {3, "three", ""}, {7, "seven", ""}};
  c.annotations = {{1, 1, 7, {1, 2, 10, 5}, 50, false},
                   {2, 1, 12, {0, 0, 4, 4}, 16, false},
                   {3, 1, 3, {0, 0, 8, 8}, 64, true},    // crowd: not a target
                   {4, 1, 3, {5, 5, 0.5, 8}, 4, false},  // w < 1: not a target
                   {5, 2, 3, {0, 0, 8, 8}, 64, true}};   // image 2 has only a crowd box
  write_coco_instances((dir / "ann.json").string(), c);
  const std::string yaml = "{type: CocoDataset, ann_file: '" + (dir / "ann.json").string() +
                           "', img_dir: '" + dir.string() + "'";
  auto filtered = DatasetRegistry().build(Config::parse(yaml + "}"));
  EXPECT_EQ(filtered->size(), 1);
  EXPECT_EQ(filtered->class_names(), (std::vector<std::string>{"three", "seven", "twelve"}));
  EXPECT_EQ(filtered->label_to_category(), (std::vector<int64_t>{3, 7, 12}));
  Rng rng({0});
  const Sample s = filtered->get(0, rng);
  ASSERT_EQ(s.boxes.size(), 2u);
  EXPECT_EQ(s.labels, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(s.boxes[0], (std::array<float, 4>{1, 2, 11, 7}));
  auto all = DatasetRegistry().build(Config::parse(yaml + ", filter_empty: false}"));
  EXPECT_EQ(all->size(), 2);
  EXPECT_TRUE(all->get(1, rng).boxes.empty());
}

TEST_F(LoaderTest, MissingOrBrokenImagesAreReportedWithTheirPath) {
  const fs::path dir = root_ / "broken";
  fs::create_directories(dir / "val");
  fs::copy(root_ / "annotations", dir / "annotations");
  fs::copy(root_ / "val", dir / "val");
  const CocoDataset gt = load_coco_instances((dir / "annotations/instances_val.json").string());
  const fs::path missing = dir / "val" / gt.images[1].file_name;
  const fs::path corrupt = dir / "val" / gt.images[3].file_name;
  fs::remove(missing);
  std::ofstream(corrupt, std::ios::binary | std::ios::trunc) << "not an image";

  CocoDetectionDatasetOptions o;
  o.ann_file = (dir / "annotations/instances_val.json").string();
  o.img_dir = (dir / "val").string();
  o.filter_empty = false;
  auto ds = std::make_shared<CocoDetectionDataset>(o);
  EXPECT_EQ(error_of([&] { ds->load(1); }), missing.string() + ": no such file");
  const std::string undecodable = corrupt.string() +
                                  ": cannot decode image: not a JPEG, PNG, BMP, PNM, WebP or TIFF "
                                  "file (bytes 6e 6f 74 20 61 6e 20 69)";  // "not an i..."
  EXPECT_EQ(error_of([&] { ds->load(3); }), undecodable);

  LoaderOptions lo;
  lo.batch_size = 1;
  lo.shuffle = false;
  lo.num_workers = 2;
  DataLoader loader(ds, lo);
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next().has_value());
  EXPECT_EQ(error_of([&] { loader.next(); }), missing.string() + ": no such file");
  ASSERT_TRUE(loader.next().has_value());
  EXPECT_EQ(error_of([&] { loader.next(); }), undecodable);
}

TEST_F(LoaderTest, ConfigErrorsNameTheKeyPath) {
  const std::string unknown_dataset = error_of([] {
    DataLoader::from_config(Config::parse("batch_size: 2\ndataset: {type: VocDataset}", "d.yaml"));
  });
  EXPECT_NE(unknown_dataset.find("d.yaml: dataset.type: unknown dataset 'VocDataset' (known: "),
            std::string::npos)
      << unknown_dataset;
  EXPECT_NE(unknown_dataset.find("CocoDataset"), std::string::npos) << unknown_dataset;
  const std::string unknown_transform = error_of([] {
    DataLoader::from_config(Config::parse(
        "dataset: {type: CocoDataset, ann_file: a.json, img_dir: x, pipeline: [{type: Mosaic}]}",
        "d.yaml"));
  });
  // the pipeline is built before the annotation file is read
  EXPECT_NE(unknown_transform.find("d.yaml: dataset.pipeline[0].type: unknown transform 'Mosaic'"),
            std::string::npos)
      << unknown_transform;
  const std::string bad_batch = error_of([] {
    DataLoader::from_config(Config::parse("batch_size: 0\ndataset: {type: CocoDataset}", "d.yaml"));
  });
  EXPECT_NE(bad_batch.find("d.yaml: batch_size: expected an integer >= 1, got 0"),
            std::string::npos)
      << bad_batch;
  const std::string bad_key = error_of([] {
    DataLoader::from_config(Config::parse("batchsize: 2\ndataset: {type: CocoDataset}", "d.yaml"));
  });
  EXPECT_NE(bad_key.find("unknown key 'batchsize'"), std::string::npos) << bad_key;
  const std::string missing_ann = error_of([] {
    DataLoader::from_config(Config::parse(
        "dataset: {type: CocoDataset, ann_file: /nonexistent/a.json, img_dir: x}", "d.yaml"));
  });
  EXPECT_NE(missing_ann.find("/nonexistent/a.json"), std::string::npos) << missing_ann;
}

}  // namespace
}  // namespace setdet
