#include <gtest/gtest.h>

#include <functional>
#include <opencv2/core.hpp>
#include <set>

#include "setdet/data/transforms.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

// A w x h BGR image whose pixel (x, y) is (x % 256, y % 256, (x + 2 y) % 256).
Sample make_sample(int w, int h, std::vector<std::array<float, 4>> boxes = {}) {
  Sample s;
  s.image = cv::Mat(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      s.image.at<cv::Vec3b>(y, x) = {static_cast<uchar>(x % 256), static_cast<uchar>(y % 256),
                                     static_cast<uchar>((x + 2 * y) % 256)};
    }
  }
  s.labels.assign(boxes.size(), 0);
  s.boxes = std::move(boxes);
  s.meta.file = "hand-made";
  s.meta.original_hw = {h, w};
  s.meta.input_hw = {h, w};
  s.meta.padded_hw = {h, w};
  return s;
}

TEST(Resize, KeepRatioScalesByTheLimitingSideAndScalesBoxes) {
  Sample s = make_sample(200, 100, {{10, 20, 110, 60}});
  Rng rng({0});
  Resize({{256, 256}}).apply(s, rng);
  // factor = min(256 / 200, 256 / 100) = 1.28
  EXPECT_EQ(s.image.cols, 256);
  EXPECT_EQ(s.image.rows, 128);
  EXPECT_DOUBLE_EQ(s.meta.scale_x, 256.0 / 200.0);
  EXPECT_DOUBLE_EQ(s.meta.scale_y, 128.0 / 100.0);
  EXPECT_EQ(s.meta.input_hw, (std::array<int64_t, 2>{128, 256}));
  EXPECT_EQ(s.meta.original_hw, (std::array<int64_t, 2>{100, 200}));
  EXPECT_FLOAT_EQ(s.boxes[0][0], 12.8f);
  EXPECT_FLOAT_EQ(s.boxes[0][1], 25.6f);
  EXPECT_FLOAT_EQ(s.boxes[0][2], 140.8f);
  EXPECT_FLOAT_EQ(s.boxes[0][3], 76.8f);
}

TEST(Resize, MmdetStyleLongShortScale) {
  // (1333, 800) on 640 x 480: factor = min(1333 / 640, 800 / 480) = 5 / 3; 640 * 5 / 3 + 0.5
  // truncates to 1067 as in mmcv's _scale_size.
  const Resize r({{1333, 800}});
  EXPECT_EQ(r.output_size(640, 480, {1333, 800}), (std::array<int64_t, 2>{1067, 800}));
  EXPECT_EQ(r.output_size(480, 640, {1333, 800}), (std::array<int64_t, 2>{800, 1067}));
  // a very long image is limited by its long side
  EXPECT_EQ(r.output_size(2000, 100, {1333, 800}), (std::array<int64_t, 2>{1333, 67}));
}

TEST(Resize, WithoutKeepRatioTheImageBecomesTheScale) {
  Sample s = make_sample(200, 100, {{0, 0, 200, 100}});
  Rng rng({0});
  Resize({{300, 150}}, /*keep_ratio=*/false).apply(s, rng);
  EXPECT_EQ(s.image.cols, 300);
  EXPECT_EQ(s.image.rows, 150);
  EXPECT_FLOAT_EQ(s.boxes[0][2], 300.f);
  EXPECT_FLOAT_EQ(s.boxes[0][3], 150.f);
}

TEST(Resize, ValueModePicksOneOfTheScalesDeterministically) {
  const Resize r({{256, 128}, {320, 160}, {384, 192}}, true, Resize::Mode::kValue);
  std::set<int64_t> seen;
  Rng a({9}), b({9});
  for (int i = 0; i < 300; ++i) {
    const auto s = r.sample_scale(a);
    EXPECT_EQ(s, r.sample_scale(b));
    EXPECT_TRUE(s[0] == 256 || s[0] == 320 || s[0] == 384) << s[0];
    EXPECT_EQ(s[1] * 2, s[0]);
    seen.insert(s[0]);
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST(Resize, RangeModeSamplesLongAndShortEdgesWithinTheBounds) {
  const Resize r({{400, 200}, {300, 250}}, true, Resize::Mode::kRange);
  std::set<int64_t> longs, shorts;
  Rng a({4}), b({4}), c({5});
  int differs = 0;
  for (int i = 0; i < 3000; ++i) {
    const auto s = r.sample_scale(a);
    EXPECT_EQ(s, r.sample_scale(b));
    differs += s != r.sample_scale(c);
    ASSERT_GE(s[0], 300);
    ASSERT_LE(s[0], 400);
    ASSERT_GE(s[1], 200);
    ASSERT_LE(s[1], 250);
    longs.insert(s[0]);
    shorts.insert(s[1]);
  }
  EXPECT_GT(differs, 2900);
  EXPECT_EQ(longs.size(), 101u);  // every integer in [300, 400]
  EXPECT_EQ(shorts.size(), 51u);
}

TEST(RandomFlip, MirrorsImageAndBoxesExactly) {
  Sample s = make_sample(100, 40, {{10, 5, 30, 25}, {0, 0, 100, 40}});
  const cv::Mat original = s.image.clone();
  Rng rng({0});
  RandomFlip(1.0).apply(s, rng);
  EXPECT_TRUE(s.meta.flipped);
  EXPECT_FLOAT_EQ(s.boxes[0][0], 70.f);  // 100 - 30
  EXPECT_FLOAT_EQ(s.boxes[0][1], 5.f);
  EXPECT_FLOAT_EQ(s.boxes[0][2], 90.f);  // 100 - 10
  EXPECT_FLOAT_EQ(s.boxes[0][3], 25.f);
  EXPECT_FLOAT_EQ(s.boxes[1][0], 0.f);
  EXPECT_FLOAT_EQ(s.boxes[1][2], 100.f);
  for (int y = 0; y < 40; y += 7) {
    for (int x = 0; x < 100; ++x) {
      ASSERT_EQ(s.image.at<cv::Vec3b>(y, x), original.at<cv::Vec3b>(y, 99 - x));
    }
  }
  RandomFlip(1.0).apply(s, rng);  // twice is the identity
  EXPECT_FALSE(s.meta.flipped);
  EXPECT_FLOAT_EQ(s.boxes[0][0], 10.f);
  EXPECT_EQ(cv::norm(s.image, original, cv::NORM_INF), 0.0);
}

TEST(RandomFlip, ProbabilityIsRespected) {
  Rng rng({1});
  int flips = 0;
  for (int i = 0; i < 2000; ++i) {
    Sample s = make_sample(8, 8);
    RandomFlip(0.5).apply(s, rng);
    flips += s.meta.flipped;
    Sample never = make_sample(8, 8);
    RandomFlip(0.0).apply(never, rng);
    ASSERT_FALSE(never.meta.flipped);
  }
  EXPECT_NEAR(flips, 1000, 100);
}

TEST(Normalize, SubtractsMeanDividesByStdAfterChannelSwap) {
  Sample s = make_sample(2, 1);
  s.image.at<cv::Vec3b>(0, 0) = {10, 20, 30};  // B, G, R
  Rng rng({0});
  Sample t = s;
  t.image = s.image.clone();
  Normalize({1, 2, 3}, {2, 4, 5}, /*to_rgb=*/true).apply(s, rng);
  ASSERT_EQ(s.image.type(), CV_32FC3);
  const auto v = s.image.at<cv::Vec3f>(0, 0);
  EXPECT_FLOAT_EQ(v[0], (30.f - 1.f) / 2.f);  // R first
  EXPECT_FLOAT_EQ(v[1], (20.f - 2.f) / 4.f);
  EXPECT_FLOAT_EQ(v[2], (10.f - 3.f) / 5.f);
  Normalize({1, 2, 3}, {2, 4, 5}, /*to_rgb=*/false).apply(t, rng);
  const auto u = t.image.at<cv::Vec3f>(0, 0);
  EXPECT_FLOAT_EQ(u[0], (10.f - 1.f) / 2.f);
  EXPECT_FLOAT_EQ(u[2], (30.f - 3.f) / 5.f);
}

TEST(Pad, PadsBottomRightToAMultipleOfTheDivisor) {
  Sample s = make_sample(70, 100);
  const cv::Mat original = s.image.clone();
  Rng rng({0});
  Pad(32).apply(s, rng);
  EXPECT_EQ(s.image.rows, 128);
  EXPECT_EQ(s.image.cols, 96);
  EXPECT_EQ(s.meta.padded_hw, (std::array<int64_t, 2>{128, 96}));
  EXPECT_EQ(s.meta.input_hw, (std::array<int64_t, 2>{100, 70}));
  EXPECT_EQ(cv::norm(s.image(cv::Rect(0, 0, 70, 100)), original, cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(s.image(cv::Rect(70, 0, 26, 128)), cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(s.image(cv::Rect(0, 100, 96, 28)), cv::NORM_INF), 0.0);
  Pad(32).apply(s, rng);  // already a multiple
  EXPECT_EQ(s.image.rows, 128);
  Sample f = make_sample(10, 20);
  Pad(0, {32, 48}).apply(f, rng);
  EXPECT_EQ(f.image.rows, 32);
  EXPECT_EQ(f.image.cols, 48);
}

TEST(Pipeline, BuildsFromConfigAndRunsInOrder) {
  const Config cfg = Config::parse(
      "pipeline:\n"
      "  - {type: Resize, scale: [64, 64], keep_ratio: true}\n"
      "  - {type: RandomFlip, prob: 1.0}\n"
      "  - {type: Normalize, mean: [0, 0, 0], std: [1, 1, 1], to_rgb: false}\n"
      "  - {type: Pad, size_divisor: 32}\n",
      "pipe.yaml");
  const auto pipeline = build_pipeline(cfg["pipeline"]);
  ASSERT_EQ(pipeline.size(), 4u);
  Sample s = make_sample(100, 50, {{0, 0, 10, 10}});
  Rng rng({0});
  apply_pipeline(pipeline, s, rng);
  EXPECT_EQ(s.meta.input_hw, (std::array<int64_t, 2>{32, 64}));
  EXPECT_EQ(s.meta.padded_hw, (std::array<int64_t, 2>{32, 64}));
  EXPECT_TRUE(s.meta.flipped);
  EXPECT_FLOAT_EQ(s.boxes[0][0], 64.f - 6.4f);
  EXPECT_FLOAT_EQ(s.boxes[0][2], 64.f);
  EXPECT_EQ(s.image.type(), CV_32FC3);
}

TEST(Pipeline, ConfigErrorsNameTheKeyPath) {
  const std::string unknown = error_of([] {
    build_pipeline(Config::parse("pipeline:\n  - {type: Resize, scale: [8, 8]}\n  - {type: Blur}\n",
                                 "pipe.yaml")["pipeline"]);
  });
  EXPECT_NE(unknown.find("pipe.yaml: pipeline[1].type: unknown transform 'Blur'"),
            std::string::npos)
      << unknown;
  EXPECT_NE(unknown.find("Normalize, Pad, RandomFlip, Resize"), std::string::npos) << unknown;

  const std::string bad_key = error_of([] {
    build_pipeline(Config::parse("p: [{type: Resize, scale: [8, 8], ratio: 2}]", "x.yaml")["p"]);
  });
  EXPECT_NE(bad_key.find("unknown key 'p[0].ratio'"), std::string::npos) << bad_key;

  const std::string range = error_of([] {
    build_pipeline(Config::parse(
        "p: [{type: Resize, scale: [[8, 8], [9, 9], [10, 10]], multiscale_mode: range}]",
        "x.yaml")["p"]);
  });
  EXPECT_NE(range.find("p[0].scale: multiscale_mode 'range' needs exactly 2 scales"),
            std::string::npos)
      << range;

  const std::string pair = error_of([] {
    build_pipeline(Config::parse("p: [{type: Resize, scale: [8, 8, 8]}]", "x.yaml")["p"]);
  });
  EXPECT_NE(pair.find("x.yaml: p[0].scale: expected a pair"), std::string::npos) << pair;

  const std::string std_zero = error_of([] {
    build_pipeline(
        Config::parse("p: [{type: Normalize, mean: [0, 0, 0], std: [1, 0, 1]}]", "x.yaml")["p"]);
  });
  EXPECT_NE(std_zero.find("p[0].std: expected positive values"), std::string::npos) << std_zero;

  const std::string prob = error_of(
      [] { build_pipeline(Config::parse("p: [{type: RandomFlip, prob: 1.5}]", "x.yaml")["p"]); });
  EXPECT_NE(prob.find("p[0].prob"), std::string::npos) << prob;
}

}  // namespace
}  // namespace setdet
