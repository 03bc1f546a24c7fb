#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "setdet/core/error.h"
#include "setdet/core/io/score_threshold_file.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

class ScoreThresholdFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("setdet_score_thr_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    checkpoint_ = (dir_ / "latest.pt").string();
    write(checkpoint_, "weights");
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }

  fs::path dir_;
  std::string checkpoint_;
};

CocoOperatingPoint point() {
  CocoOperatingPoint p;
  p.score_threshold = 0.4125;
  p.f1 = 6.0 / 7.0;
  p.precision = 0.75;
  p.recall = 1.0;
  p.true_positives = 3;
  p.false_positives = 1;
  p.ground_truth = 3;
  return p;
}

TEST_F(ScoreThresholdFile, RoundTripsBesideTheCheckpoint) {
  EXPECT_EQ(score_threshold_path(checkpoint_), (dir_ / "latest.score_threshold.json").string());
  EXPECT_FALSE(read_score_threshold(checkpoint_).has_value());  // none stored yet
  write_score_threshold(checkpoint_, point(), "val", 200);
  const auto s = read_score_threshold(checkpoint_);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->point.score_threshold, 0.4125);
  EXPECT_EQ(s->point.f1, 6.0 / 7.0);
  EXPECT_EQ(s->point.true_positives, 3);
  EXPECT_EQ(s->point.ground_truth, 3);
  EXPECT_EQ(s->split, "val");
  EXPECT_EQ(s->images, 200);
  EXPECT_EQ(s->path, score_threshold_path(checkpoint_));
}

TEST_F(ScoreThresholdFile, ACheckpointWrittenAgainNoLongerMatches) {
  write_score_threshold(checkpoint_, point(), "val", 200);
  write(checkpoint_, "weights after more training");  // another size
  EXPECT_FALSE(read_score_threshold(checkpoint_).has_value());
  write_score_threshold(checkpoint_, point(), "val", 200);
  ASSERT_TRUE(read_score_threshold(checkpoint_).has_value());
  // same size, another modification time
  const auto t = fs::last_write_time(checkpoint_);
  fs::last_write_time(checkpoint_, t + std::chrono::seconds(5));
  EXPECT_FALSE(read_score_threshold(checkpoint_).has_value());
}

TEST_F(ScoreThresholdFile, AMalformedFileIsAnErrorNamingIt) {
  const std::string path = score_threshold_path(checkpoint_);
  write(path, "{\"score_threshold\": ");
  try {
    read_score_threshold(checkpoint_);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": not valid JSON"), std::string::npos) << e.what();
  }
  write(path, "{\"checkpoint_bytes\": \"seven\"}");
  try {
    read_score_threshold(checkpoint_);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"checkpoint_bytes\" is missing or not an integer"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace setdet
