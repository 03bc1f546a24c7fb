// ClassBalancedSampler: p(k) = min(n_k, N) / sum_i min(n_i, N) (Eq. 3 of the Open Images 2019
// VRD winner), the empirical class distribution of its draws, determinism per (seed, epoch), and
// its use from a loader config.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "setdet/data/class_balanced_sampler.h"
#include "setdet/data/loader.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

// Items with given label lists; get() returns an 8 x 8 image with those labels.
class LabelledDataset : public Dataset {
 public:
  LabelledDataset(std::vector<std::vector<int64_t>> labels, int64_t classes)
      : labels_(std::move(labels)) {
    for (int64_t c = 0; c < classes; ++c) {
      names_.push_back("c" + std::to_string(c));
      categories_.push_back(c + 1);
    }
  }
  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  Sample get(int64_t index, Rng&) const override {
    Sample s;
    s.image = cv::Mat(8, 8, CV_8UC3, cv::Scalar(0, 0, 0));
    for (int64_t l : labels_[static_cast<size_t>(index)]) {
      s.boxes.push_back({0, 0, 4, 4});
      s.labels.push_back(l);
    }
    s.meta.image_id = index;
    s.meta.original_hw = s.meta.input_hw = s.meta.padded_hw = {8, 8};
    return s;
  }
  const std::vector<std::string>& class_names() const override { return names_; }
  const std::vector<int64_t>& label_to_category() const override { return categories_; }
  std::shared_ptr<const CocoDataset> ground_truth() const override { return nullptr; }
  std::vector<int64_t> target_labels(int64_t index) const override {
    return labels_[static_cast<size_t>(index)];
  }

 private:
  std::vector<std::vector<int64_t>> labels_;
  std::vector<std::string> names_;
  std::vector<int64_t> categories_;
};

// 900 images of class 0, 90 of class 1, 10 of class 2 (one class each), none of class 3.
std::vector<std::vector<int64_t>> skewed() {
  std::vector<std::vector<int64_t>> labels;
  for (int i = 0; i < 900; ++i) labels.push_back({0});
  for (int i = 0; i < 90; ++i) labels.push_back({1});
  for (int i = 0; i < 10; ++i) labels.push_back({2});
  return labels;
}

TEST(ClassBalancedSampler, ClassProbabilitiesFollowEquation3) {
  const LabelledDataset data(skewed(), 4);
  // N = 100: min(n_k, N) = 100, 90, 10, 0 over 200
  const auto p = ClassBalancedSampler(100).class_probabilities(data);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_DOUBLE_EQ(p[0], 0.5);
  EXPECT_DOUBLE_EQ(p[1], 0.45);
  EXPECT_DOUBLE_EQ(p[2], 0.05);
  EXPECT_DOUBLE_EQ(p[3], 0.0);
  // N >= every n_k: the original distribution (Eq. 2)
  const auto q = ClassBalancedSampler(1000000).class_probabilities(data);
  EXPECT_DOUBLE_EQ(q[0], 0.9);
  EXPECT_DOUBLE_EQ(q[2], 0.01);
  // N = 1: uniform over the classes that have images
  const auto u = ClassBalancedSampler(1).class_probabilities(data);
  EXPECT_DOUBLE_EQ(u[0], 1.0 / 3);
  EXPECT_DOUBLE_EQ(u[2], 1.0 / 3);

  // an image with two classes counts once for each, and twice the same class counts once
  const LabelledDataset multi({{0, 0, 1}, {1}, {2, 1}}, 3);
  const auto m = ClassBalancedSampler(100).class_probabilities(multi);
  EXPECT_DOUBLE_EQ(m[0], 1.0 / 5);
  EXPECT_DOUBLE_EQ(m[1], 3.0 / 5);
  EXPECT_DOUBLE_EQ(m[2], 1.0 / 5);
}

TEST(ClassBalancedSampler, DrawsFollowTheClassProbabilities) {
  const LabelledDataset data(skewed(), 4);
  const ClassBalancedSampler sampler(100);
  std::map<int64_t, int64_t> per_class;
  int64_t draws = 0;
  for (int64_t epoch = 0; epoch < 40; ++epoch) {
    const auto order = sampler.epoch_order(data, 7, epoch);
    ASSERT_EQ(order.size(), 1000u);
    for (int64_t i : order) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, 1000);
      ++per_class[data.target_labels(i)[0]];
      ++draws;
    }
  }
  // 40,000 draws: binomial standard deviations 0.0025 (p = 0.5) and 0.0011 (p = 0.05)
  EXPECT_NEAR(per_class[0] / static_cast<double>(draws), 0.5, 0.0125);
  EXPECT_NEAR(per_class[1] / static_cast<double>(draws), 0.45, 0.0125);
  EXPECT_NEAR(per_class[2] / static_cast<double>(draws), 0.05, 0.0055);
  EXPECT_EQ(per_class.count(3), 0u);

  // within a class, images are drawn uniformly: all 10 images of class 2 appear
  std::set<int64_t> rare;
  for (int64_t i : sampler.epoch_order(data, 7, 0)) {
    if (i >= 990) rare.insert(i);
  }
  EXPECT_EQ(rare.size(), 10u);
}

TEST(ClassBalancedSampler, OrderIsAPureFunctionOfSeedAndEpoch) {
  const LabelledDataset data(skewed(), 4);
  const ClassBalancedSampler a(100), b(100);
  EXPECT_EQ(a.epoch_order(data, 3, 5), b.epoch_order(data, 3, 5));
  EXPECT_NE(a.epoch_order(data, 3, 5), a.epoch_order(data, 3, 6));
  EXPECT_NE(a.epoch_order(data, 3, 5), a.epoch_order(data, 4, 5));
}

TEST(ClassBalancedSampler, LoaderConfigChoosesIt) {
  auto data = std::make_shared<LabelledDataset>(skewed(), 4);
  LoaderOptions o;
  o.batch_size = 50;
  o.num_workers = 2;
  o.seed = 11;
  o.sampler = DataSamplerRegistry().build(Config::parse("{type: ClassBalancedSampler, cap: 100}"));
  DataLoader loader(data, o);
  const auto order = loader.epoch_order(2);
  EXPECT_EQ(order, ClassBalancedSampler(100).epoch_order(*data, 11, 2));
  // the batches follow that order, whatever the number of workers
  loader.start_epoch(2);
  size_t k = 0;
  while (auto batch = loader.next()) {
    for (const auto& meta : batch->metas) EXPECT_EQ(meta.image_id, order[k++]);
  }
  EXPECT_EQ(k, order.size());
}

TEST(ClassBalancedSampler, Errors) {
  EXPECT_NE(error_of([] {
              DataSamplerRegistry().build(
                  Config::parse("{type: ClassBalancedSampler, cap: 0}", "c.yaml"));
            }).find("c.yaml: cap: expected a positive number of images, got 0"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              DataSamplerRegistry().build(
                  Config::parse("{type: ClassBalancedSampler, cap: 5, n: 1}", "c.yaml"));
            }).find("unknown key"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              DataSamplerRegistry().build(Config::parse("{type: Balanced}", "c.yaml"));
            }).find("unknown data sampler 'Balanced' (known: ClassBalancedSampler"),
            std::string::npos);
  const LabelledDataset empty({{}, {}}, 2);
  EXPECT_NE(error_of([&] {
              ClassBalancedSampler(3).epoch_order(empty, 0, 0);
            }).find("no item of the dataset has a target"),
            std::string::npos);
  const LabelledDataset bad({{5}}, 2);
  EXPECT_NE(error_of([&] {
              ClassBalancedSampler(3).epoch_order(bad, 0, 0);
            }).find("item 0 has label 5 outside 0..1"),
            std::string::npos);
}

}  // namespace
}  // namespace setdet
