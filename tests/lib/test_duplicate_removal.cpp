// The duplicate-removal step of test_cfg.nms and the shared post-processing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "setdet/models/dedup/duplicate_removal.h"
#include "setdet/models/post_processing.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

// Two classes; boxes 0, 1 overlap (IoU 0.81), box 2 is their copy in class 1, box 3 is far away.
struct Fixture {
  at::Tensor boxes = torch::tensor({{0.f, 0.f, 10.f, 10.f},
                                    {1.f, 1.f, 10.f, 10.f},
                                    {0.f, 0.f, 10.f, 10.f},
                                    {50.f, 50.f, 60.f, 60.f}});
  at::Tensor scores = torch::tensor({0.9f, 0.8f, 0.7f, 0.6f});
  at::Tensor labels = torch::tensor({0, 0, 1, 0}, torch::kLong);
};

std::vector<int64_t> to_vec(const at::Tensor& t) {
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

TEST(DuplicateRemoval, NmsIsClassAwareUnlessAgnostic) {
  Fixture f;
  DuplicateRemovalConfig cfg;
  cfg.iou_threshold = 0.5;
  auto kept = remove_duplicates(f.boxes, f.scores, f.labels, cfg, 100);
  EXPECT_EQ(to_vec(kept.indices), (std::vector<int64_t>{0, 2, 3}));
  EXPECT_TRUE(torch::equal(kept.scores, torch::tensor({0.9f, 0.7f, 0.6f})));
  cfg.class_agnostic = true;
  EXPECT_EQ(to_vec(remove_duplicates(f.boxes, f.scores, f.labels, cfg, 100).indices),
            (std::vector<int64_t>{0, 3}));
  cfg.class_agnostic = false;
  EXPECT_EQ(to_vec(remove_duplicates(f.boxes, f.scores, f.labels, cfg, 2).indices),
            (std::vector<int64_t>{0, 2}));
}

TEST(DuplicateRemoval, SoftNmsDecaysWithinAClassAndResorts) {
  Fixture f;
  DuplicateRemovalConfig cfg;
  cfg.type = "soft_nms";
  cfg.iou_threshold = 0.3;
  cfg.min_score = 0.05;
  const auto kept = remove_duplicates(f.boxes, f.scores, f.labels, cfg, 100);
  // Linear: box 1 decays by 1 - IoU(0, 1) = 1 - 81/100 to 0.8 * 0.19 = 0.152, below box 3.
  EXPECT_EQ(to_vec(kept.indices), (std::vector<int64_t>{0, 2, 3, 1}));
  EXPECT_NEAR(kept.scores[3].item<double>(), 0.8 * 0.19, 1e-6);
  EXPECT_NEAR(kept.scores[1].item<double>(), 0.7, 1e-7);  // class 1: nothing to decay it

  cfg.method = "gaussian";
  cfg.sigma = 0.5;
  const auto g = remove_duplicates(f.boxes, f.scores, f.labels, cfg, 100);
  EXPECT_NEAR(g.scores[3].item<double>(), 0.8 * std::exp(-0.81 * 0.81 / 0.5), 1e-6);
}

TEST(DuplicateRemoval, MatrixNmsAndNone) {
  Fixture f;
  DuplicateRemovalConfig cfg;
  cfg.type = "matrix_nms";
  cfg.kernel = "linear";
  const auto m = remove_duplicates(f.boxes, f.scores, f.labels, cfg, 100);
  // Linear kernel: box 1's score times (1 - 0.81) / (1 - 0): below box 3 after the decay.
  EXPECT_EQ(to_vec(m.indices), (std::vector<int64_t>{0, 2, 3, 1}));
  EXPECT_NEAR(m.scores[3].item<double>(), 0.8 * 0.19, 1e-6);

  cfg.type = "none";
  const auto n = remove_duplicates(f.boxes, f.scores, f.labels, cfg, 3);
  EXPECT_EQ(to_vec(n.indices), (std::vector<int64_t>{0, 1, 2}));
}

TEST(DuplicateRemoval, EmptyAndSingleCandidates) {
  DuplicateRemovalConfig cfg;
  for (const char* type : {"nms", "soft_nms", "matrix_nms", "none"}) {
    cfg.type = type;
    const auto e = remove_duplicates(torch::zeros({0, 4}), torch::zeros({0}),
                                     torch::zeros({0}, torch::kLong), cfg, 100);
    EXPECT_EQ(e.indices.numel(), 0) << type;
    const auto one = remove_duplicates(torch::tensor({{1.f, 1.f, 1.f, 1.f}}), torch::tensor({0.5f}),
                                       torch::zeros({1}, torch::kLong), cfg, 100);
    EXPECT_EQ(one.indices.numel(), 1) << type;
  }
}

TEST(DuplicateRemoval, ConfigAndSpecErrorsNameTheOption) {
  const auto base = Config::parse("{type: soft_nms, method: gaussian, sigma: 0.25}", "cfg.yaml");
  const auto c = duplicate_removal_from_config(base);
  EXPECT_EQ(c.type, "soft_nms");
  EXPECT_EQ(c.method, "gaussian");
  EXPECT_DOUBLE_EQ(c.sigma, 0.25);
  const auto m = parse_duplicate_removal("matrix_nms:sigma=3,kernel=linear", "--dedup");
  EXPECT_DOUBLE_EQ(m.matrix_sigma, 3.0);
  EXPECT_EQ(m.kernel, "linear");
  // Unset options come from the fallback (the configured test_cfg.nms).
  DuplicateRemovalConfig fallback;
  fallback.iou_threshold = 0.6;
  EXPECT_DOUBLE_EQ(parse_duplicate_removal("nms", "--dedup", fallback).iou_threshold, 0.6);

  EXPECT_NE(error_of([] {
              parse_duplicate_removal("greedy", "--dedup");
            }).find("unknown duplicate removal 'greedy'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_duplicate_removal("nms:iou_threshold=1.5", "--dedup");
            }).find("iou_threshold must be in [0, 1], got 1.5"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_duplicate_removal("nms:0.5", "--dedup"); }).find("key=value"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              duplicate_removal_from_config(Config::parse("{type: nms, iou: 0.5}", "cfg.yaml"));
            }).find("iou"),
            std::string::npos);
  const std::string learned = error_of([] {
    DuplicateRemovalConfig l;
    l.type = "learned";
    remove_duplicates(torch::zeros({1, 4}), torch::ones({1}), torch::zeros({1}, torch::kLong), l,
                      1);
  });
  EXPECT_NE(learned.find("trained duplicate-removal network"), std::string::npos);
}

TEST(PostProcessing, TestCfgReadsNmsOrItsShorthand) {
  PostProcessConfig defaults;
  const auto a = PostProcessConfig::from_config(
      Config::parse("{score_thr: 0.1, nms_thr: 0.7, max_per_img: 50}", "t.yaml"), defaults);
  EXPECT_EQ(a.nms.type, "nms");
  EXPECT_DOUBLE_EQ(a.nms.iou_threshold, 0.7);
  EXPECT_EQ(a.max_per_img, 50);
  const auto b = PostProcessConfig::from_config(
      Config::parse("{nms: {type: soft_nms, iou_threshold: 0.3}}", "t.yaml"), defaults);
  EXPECT_EQ(b.nms.type, "soft_nms");
  EXPECT_NE(error_of([&] {
              PostProcessConfig::from_config(
                  Config::parse("{nms: {type: nms}, nms_thr: 0.5}", "t.yaml"), defaults);
            }).find("either nms or nms_thr"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              PostProcessConfig::from_config(Config::parse("{score_thr: .nan}", "t.yaml"),
                                             defaults);
            }).find("score_thr"),
            std::string::npos);
}

TEST(PostProcessing, CandidatesThresholdThenTopK) {
  // [3 locations, 2 classes]
  const auto s = torch::tensor({{0.1f, 0.9f}, {0.5f, 0.05f}, {0.7f, 0.3f}});
  const auto c = select_candidates(s, 0.2, 3);
  EXPECT_TRUE(torch::equal(c.scores, torch::tensor({0.9f, 0.7f, 0.5f})));
  EXPECT_EQ(to_vec(c.locations), (std::vector<int64_t>{0, 2, 1}));
  EXPECT_EQ(to_vec(c.labels), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(select_candidates(s, 0.95, 3).scores.numel(), 0);
}

TEST(PostProcessing, FinalizeClipsRemovesDuplicatesAndMapsBack) {
  ImageMeta meta;
  meta.original_hw = {50, 100};
  meta.input_hw = {100, 200};
  meta.scale_x = meta.scale_y = 2.0;
  PostProcessConfig cfg;
  cfg.nms.iou_threshold = 0.5;
  const auto boxes = torch::tensor(
      {{-10.f, 0.f, 40.f, 40.f}, {0.f, 0.f, 40.f, 41.f}, {100.f, 50.f, 300.f, 120.f}});
  const auto det =
      finalize_detections(boxes, torch::tensor({0.9f, 0.8f, 0.7f}),
                          torch::tensor({2, 2, 2}, torch::kLong), meta, {128, 224}, cfg);
  ASSERT_EQ(det.scores.numel(), 2);
  EXPECT_TRUE(torch::allclose(det.boxes,
                              torch::tensor({{0.f, 0.f, 20.f, 20.f}, {50.f, 25.f, 100.f, 50.f}})));
  EXPECT_EQ(to_vec(det.labels), (std::vector<int64_t>{2, 2}));
}

}  // namespace
}  // namespace setdet
