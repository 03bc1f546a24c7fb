// The public API (setdet/setdet.h) on the demo FCOS with seeded random weights, run on darknet's
// photos (Debian package `darknet`): detections in original pixels, batch = single, concurrent
// detect() = sequential, run-time options, and the errors bad input gets.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <thread>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/models/detector.h"
#include "setdet/setdet.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;
namespace fs = std::filesystem;

const std::string kConfig =
    std::string(SETDET_TEST_DATA_DIR) + "/../../configs/fcos/fcos_r18h_fpn64_256_demo.yaml";
const std::string kPhotos = "/usr/share/darknet/data/";

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test_util::TempDir("api");
    checkpoint_ = (dir_->path / "random.pt").string();
    at::manual_seed(0);
    auto model = DetectorRegistry().build(Config::load(kConfig)["model"]);
    save_checkpoint(checkpoint_, *model, nullptr, TrainState{}, CheckpointMeta{});
  }
  static void TearDownTestSuite() { delete dir_; }

  static cv::Mat photo(const std::string& name) {
    cv::Mat image = cv::imread(kPhotos + name, cv::IMREAD_COLOR);
    if (image.empty()) throw std::runtime_error(kPhotos + name + " missing: install darknet");
    return image;
  }

  static inline test_util::TempDir* dir_ = nullptr;
  static inline std::string checkpoint_;
};

void expect_same(const std::vector<Detection>& a, const std::vector<Detection>& b,
                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].label, b[i].label) << what << " detection " << i;
    EXPECT_EQ(a[i].class_name, b[i].class_name) << what << " detection " << i;
    EXPECT_NEAR(a[i].score, b[i].score, 1e-5) << what << " detection " << i;
    EXPECT_NEAR(a[i].x1, b[i].x1, 1e-3) << what << " detection " << i;
    EXPECT_NEAR(a[i].y1, b[i].y1, 1e-3) << what << " detection " << i;
    EXPECT_NEAR(a[i].x2, b[i].x2, 1e-3) << what << " detection " << i;
    EXPECT_NEAR(a[i].y2, b[i].y2, 1e-3) << what << " detection " << i;
  }
}

TEST_F(ApiTest, DetectionsAreInOriginalPixelsSortedAndNamed) {
  const Detector det(kConfig, checkpoint_);
  EXPECT_EQ(det.num_classes(), 8);
  // the demo's annotation files are not there: numbered classes and the reason
  EXPECT_EQ(det.class_names().at(3), "3");
  EXPECT_NE(det.class_names_warning(), "");
  EXPECT_EQ(det.describe_dedup(), "nms(iou 0.60)");
  const cv::Mat image = photo("dog.jpg");  // 768 x 576, the model sees 256 x 192
  const auto dets = det.detect(image);
  ASSERT_GT(dets.size(), 10u);
  EXPECT_LE(dets.size(), 100u);  // test_cfg.max_per_img
  float max_x2 = 0;
  for (size_t i = 0; i < dets.size(); ++i) {
    const Detection& d = dets[i];
    if (i > 0) {
      EXPECT_LE(d.score, dets[i - 1].score);
    }
    EXPECT_GE(d.x1, 0);
    EXPECT_GE(d.y1, 0);
    EXPECT_LE(d.x2, image.cols);
    EXPECT_LE(d.y2, image.rows);
    EXPECT_LE(d.x1, d.x2);
    EXPECT_EQ(d.class_name, det.class_names().at(static_cast<size_t>(d.label)));
    max_x2 = std::max(max_x2, d.x2);
  }
  // boxes are scaled back to 768 px wide, not left in the 256 px input
  EXPECT_GT(max_x2, 256.0f);
}

TEST_F(ApiTest, ClassNamesFromOptions) {
  DetectorOptions o;
  o.class_names = {"a", "b", "c", "d", "e", "f", "g", "h"};
  const Detector det(kConfig, checkpoint_, o);
  EXPECT_EQ(det.class_names_warning(), "");
  for (const auto& d : det.detect(photo("dog.jpg")))
    EXPECT_EQ(d.class_name, o.class_names.at(static_cast<size_t>(d.label)));
  o.class_names.pop_back();
  const std::string e = error_of([&] { Detector(kConfig, checkpoint_, o); });
  EXPECT_NE(e.find("DetectorOptions.class_names: the model has 8 classes, got 7 names"),
            std::string::npos)
      << e;
}

TEST_F(ApiTest, BatchEqualsSingleImages) {
  const Detector det(kConfig, checkpoint_);
  const cv::Mat a = photo("dog.jpg");
  cv::Mat b;
  cv::flip(a, b, 1);  // same size: the batch pads neither more than alone
  const auto batch = det.detect(std::vector<cv::Mat>{a, b});
  ASSERT_EQ(batch.size(), 2u);
  expect_same(batch[0], det.detect(a), "image 0");
  expect_same(batch[1], det.detect(b), "image 1");
  EXPECT_TRUE(det.detect(std::vector<cv::Mat>{}).empty());
}

TEST_F(ApiTest, GreyAndBgraImagesAreConvertedToBgr) {
  const Detector det(kConfig, checkpoint_);
  const cv::Mat bgr = photo("person.jpg");
  cv::Mat grey, grey_bgr, bgra;
  cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(grey, grey_bgr, cv::COLOR_GRAY2BGR);
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  expect_same(det.detect(grey), det.detect(grey_bgr), "grey");
  expect_same(det.detect(bgra), det.detect(bgr), "bgra");
}

TEST_F(ApiTest, ConcurrentDetectEqualsSequential) {
  const Detector det(kConfig, checkpoint_);
  // different sizes, so concurrent calls need different FCOS point grids at once
  const std::vector<cv::Mat> images = {photo("dog.jpg"), photo("horses.jpg"), photo("person.jpg"),
                                       photo("eagle.jpg")};
  std::vector<std::vector<Detection>> sequential;
  for (const auto& image : images) sequential.push_back(det.detect(image));
  constexpr int kThreads = 4, kRounds = 2;
  std::vector<std::vector<std::vector<Detection>>> got(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      errors[t] = error_of([&] {
        for (int r = 0; r < kRounds; ++r) {
          for (size_t i = 0; i < images.size(); ++i) {
            got[t].push_back(det.detect(images[(i + t) % images.size()]));
          }
        }
      });
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(errors[t], "") << "thread " << t;
    ASSERT_EQ(got[t].size(), kRounds * images.size());
    for (size_t k = 0; k < got[t].size(); ++k) {
      const size_t image = (k % images.size() + t) % images.size();
      expect_same(got[t][k], sequential[image],
                  "thread " + std::to_string(t) + " call " + std::to_string(k));
    }
  }
}

TEST_F(ApiTest, RunTimeOptions) {
  Detector det(kConfig, checkpoint_);
  const cv::Mat image = photo("horses.jpg");
  const auto all = det.detect(image);
  ASSERT_GT(all.size(), 5u);

  DetectOptions o;
  o.score_threshold = all[all.size() / 2].score;
  det.set_options(o);
  const auto above = det.detect(image);
  EXPECT_LT(above.size(), all.size());
  for (size_t i = 0; i < above.size(); ++i) {
    EXPECT_GE(above[i].score, o.score_threshold);
    EXPECT_EQ(above[i].score, all[i].score);
  }

  o = {};
  o.max_detections = 3;
  det.set_options(o);
  const auto top3 = det.detect(image);
  ASSERT_EQ(top3.size(), 3u);
  expect_same(top3, {all.begin(), all.begin() + 3}, "top 3");

  // no duplicate removal: every candidate up to max_per_img (100) survives
  o = {};
  o.dedup = "none";
  det.set_options(o);
  EXPECT_EQ(det.describe_dedup(), "none");
  EXPECT_EQ(det.detect(image).size(), 100u);
  o.dedup = "nms:iou_threshold=0.3";
  det.set_options(o);
  EXPECT_EQ(det.describe_dedup(), "nms(iou 0.30)");
  EXPECT_LE(det.detect(image).size(), all.size());
  EXPECT_EQ(det.options().dedup, "nms:iou_threshold=0.3");

  // the configured choice comes back with an empty spec
  det.set_options({});
  expect_same(det.detect(image), all, "configured again");

  o = {};
  o.dedup = "fancy_nms";
  std::string e = error_of([&] { det.set_options(o); });
  EXPECT_NE(e.find("DetectOptions.dedup"), std::string::npos) << e;
  EXPECT_NE(e.find("fancy_nms"), std::string::npos) << e;
  o = {};
  o.score_threshold = 1.5;
  e = error_of([&] { det.set_options(o); });
  EXPECT_NE(e.find("DetectOptions.score_threshold: expected a value in [0, 1], got 1.5"),
            std::string::npos)
      << e;
  // a failed set_options leaves the options as they were
  expect_same(det.detect(image), all, "after errors");
}

TEST_F(ApiTest, ErrorsNameWhatWasWrong) {
  const std::string missing = (dir_->path / "missing.pt").string();
  std::string e = error_of([&] { Detector(kConfig, missing); });
  EXPECT_NE(e.find(missing), std::string::npos) << e;

  e = error_of([&] { Detector((dir_->path / "none.yaml").string(), checkpoint_); });
  EXPECT_NE(e.find("none.yaml"), std::string::npos) << e;

  DetectorOptions o;
  o.device = "tpu";
  e = error_of([&] { Detector(kConfig, checkpoint_, o); });
  EXPECT_NE(e.find("DetectorOptions.device"), std::string::npos) << e;
  EXPECT_NE(e.find("\"tpu\""), std::string::npos) << e;

  o = {};
  o.overrides = {"model.num_classes=5"};
  e = error_of([&] { Detector(kConfig, checkpoint_, o); });
  EXPECT_NE(e.find("random.pt"), std::string::npos) << e;

  const Detector det(kConfig, checkpoint_);
  e = error_of([&] { det.detect(cv::Mat()); });
  EXPECT_NE(e.find("Detector::detect: image 0 is empty"), std::string::npos) << e;
  e = error_of([&] { det.detect(cv::Mat(8, 8, CV_32FC3, cv::Scalar(0))); });
  EXPECT_NE(e.find("image 0: expected 8-bit BGR (CV_8UC3)"), std::string::npos) << e;
  EXPECT_NE(e.find("3 channels"), std::string::npos) << e;
  // every error is a setdet::Error
  EXPECT_THROW(det.detect(cv::Mat()), Error);
  EXPECT_THROW(Detector(kConfig, missing), Error);
}

}  // namespace
}  // namespace setdet
