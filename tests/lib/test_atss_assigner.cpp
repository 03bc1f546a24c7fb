#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <opencv2/core.hpp>

#include "point_testing.h"
#include "setdet/assign/atss_assigner.h"
#include "setdet/config/config.h"
#include "setdet/data/synthetic.h"
#include "setdet/models/detectors/fcos.h"

namespace setdet {
namespace {

using test_util::grid;
using test_util::point_index;
using test_util::positive_indices;

at::Tensor box(float x1, float y1, float x2, float y2) { return torch::tensor({{x1, y1, x2, y2}}); }

at::Tensor labels_of(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }

// Stride 8, points at 4, 12, ..., 60 on both axes; anchors of side 2 * 8 = 16.
TEST(ATSSAssigner, ThresholdIsMeanPlusUnbiasedStdOfTheCandidateIous) {
  const PointSet ps = grid({8}, {8});
  ATSSAssigner assigner(ATSSAssignerOptions().topk(5).anchor_scale(2));
  // GT [1, 4, 27, 18], centre (14, 11), area 364. The 5 nearest points (squared distances 5, 37,
  // 53, 85, 85; the next is 101) and their anchors' IoUs:
  //   (12, 12) [4, 4, 20, 20]:  224 / 396 = 56/99 = 0.56566
  //   (20, 12) [12, 4, 28, 20]: 210 / 410 = 21/41 = 0.51220
  //   (12, 4)  [4, -4, 20, 12]: 128 / 492 = 32/123 = 0.26016
  //   (12, 20) [4, 12, 20, 28]:  96 / 524 = 24/131 = 0.18321
  //   (20, 4)  [12, -4, 28, 12]: 120 / 500 = 6/25 = 0.24
  // mean 0.35224, unbiased std 0.17377: threshold 0.52601, so only (12, 12) is positive. (With
  // the biased std 0.15542 the threshold would be 0.50767 and (20, 12) would pass too.)
  const auto t = assigner.assign(ps, {box(1, 4, 27, 18)}, {labels_of({3})}, 5);
  const int64_t p = point_index(ps, 12, 12);
  EXPECT_EQ(positive_indices(t, 0, 5), std::vector<int64_t>{p});
  EXPECT_EQ(t.num_positives, 1);
  EXPECT_EQ(t.labels[0][p].item<int64_t>(), 3);
  EXPECT_EQ(t.matched[0][p].item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(t.distances[0][p], torch::tensor({11.f, 8.f, 15.f, 6.f})));
  EXPECT_NEAR(t.centerness[0][p].item<float>(), std::sqrt(11.0 / 15 * 6.0 / 8), 1e-6);
  const int64_t q = point_index(ps, 20, 12);
  EXPECT_EQ(t.labels[0][q].item<int64_t>(), 5);
  EXPECT_EQ(t.matched[0][q].item<int64_t>(), -1);
  EXPECT_TRUE(torch::equal(t.distances[0][q], torch::zeros({4})));
  EXPECT_EQ(t.centerness[0][q].item<float>(), 0.f);
}

TEST(ATSSAssigner, CandidateOnOrNearTheGtEdgeIsRejected) {
  const PointSet ps = grid({8}, {8});
  ATSSAssigner assigner(ATSSAssignerOptions().topk(6).anchor_scale(1.5));
  // GT [0, 3, 6, 12], centre (3, 7.5), area 54; anchors of side 12. The 6 nearest points (next
  // one is 301.25 away in squared distance) and their IoUs:
  //   (4, 4)  [-2, -2, 10, 10]: 42 / 156 = 7/26 = 0.26923
  //   (4, 12) [-2, 6, 10, 18]:  36 / 162 = 2/9  = 0.22222
  //   (12, 4), (12, 12), (4, 20), (12, 20): 0
  // mean 115/1404 = 0.08191, unbiased std 0.12776: threshold 0.20967. Both (4, 4) and (4, 12)
  // pass it, but (4, 12) lies on the bottom edge (b = 0): only (4, 4) is positive.
  const int64_t inside = point_index(ps, 4, 4), edge = point_index(ps, 4, 12);
  const auto t = assigner.assign(ps, {box(0, 3, 6, 12)}, {labels_of({1})}, 2);
  EXPECT_EQ(positive_indices(t, 0, 2), std::vector<int64_t>{inside});
  EXPECT_TRUE(torch::equal(t.distances[0][inside], torch::tensor({4.f, 1.f, 2.f, 8.f})));
  EXPECT_NEAR(t.centerness[0][inside].item<float>(), 0.25, 1e-6);  // sqrt(2/4 * 1/8)
  // b = 0.005: still rejected (mmdet keeps a point only when min(l, t, r, b) > 0.01).
  const auto near = assigner.assign(ps, {box(0, 3, 6, 12.005f)}, {labels_of({1})}, 2);
  EXPECT_EQ(positive_indices(near, 0, 2), std::vector<int64_t>{inside});
  // b = 0.02: inside; IoUs move by < 0.003, so (4, 12) now passes.
  const auto in = assigner.assign(ps, {box(0, 3, 6, 12.02f)}, {labels_of({1})}, 2);
  EXPECT_EQ(positive_indices(in, 0, 2), (std::vector<int64_t>{inside, edge}));
}

TEST(ATSSAssigner, PointPositiveForTwoGtsTakesTheHigherIou) {
  const PointSet ps = grid({8}, {8});
  ATSSAssigner assigner(ATSSAssignerOptions().topk(5).anchor_scale(2));
  // A = [1, 4, 27, 18]: only (12, 12) is positive, IoU 56/99 = 0.566 (first test).
  // B = [0, 4, 28, 18], area 392: candidates (12, 12) and (20, 12) have IoU 224 / 424 = 28/53 =
  // 0.528, (12, 4) and (20, 4) 128 / 520 = 16/65, (12, 20) 96 / 552 = 4/23; mean 0.34457,
  // unbiased std 0.17030, threshold 0.51487: (12, 12) and (20, 12) are positive.
  // (12, 12) goes to A (0.566 > 0.528), (20, 12) to B, whatever the GT order.
  const auto a = box(1, 4, 27, 18), b = box(0, 4, 28, 18);
  const auto t = assigner.assign(ps, {torch::cat({a, b}), torch::cat({b, a}), torch::cat({a, a})},
                                 {labels_of({0, 1}), labels_of({1, 0}), labels_of({2, 3})}, 4);
  const int64_t shared = point_index(ps, 12, 12), b_only = point_index(ps, 20, 12);
  EXPECT_EQ(positive_indices(t, 0, 4), (std::vector<int64_t>{shared, b_only}));
  EXPECT_EQ(t.matched[0][shared].item<int64_t>(), 0);
  EXPECT_EQ(t.labels[0][shared].item<int64_t>(), 0);
  EXPECT_EQ(t.matched[0][b_only].item<int64_t>(), 1);
  EXPECT_EQ(t.labels[0][b_only].item<int64_t>(), 1);
  EXPECT_TRUE(torch::equal(t.distances[0][b_only], torch::tensor({20.f, 8.f, 8.f, 6.f})));
  EXPECT_EQ(t.matched[1][shared].item<int64_t>(), 1);
  EXPECT_EQ(t.labels[1][shared].item<int64_t>(), 0);
  EXPECT_EQ(t.matched[1][b_only].item<int64_t>(), 0);
  EXPECT_EQ(t.labels[1][b_only].item<int64_t>(), 1);
  // Two identical GTs tie on every IoU: the lower index wins.
  EXPECT_EQ(positive_indices(t, 2, 4), std::vector<int64_t>{shared});
  EXPECT_EQ(t.matched[2][shared].item<int64_t>(), 0);
  EXPECT_EQ(t.labels[2][shared].item<int64_t>(), 2);
  EXPECT_EQ(t.num_positives, 5);
}

TEST(ATSSAssigner, EmptyGtListsAndImagesWithoutGt) {
  const PointSet ps = grid({8}, {8});
  ATSSAssigner assigner(ATSSAssignerOptions().topk(5).anchor_scale(2));
  const auto none = assigner.assign(ps, {torch::zeros({0, 4}), torch::zeros({0, 4})},
                                    {labels_of({}), labels_of({})}, 3);
  EXPECT_EQ(none.num_positives, 0);
  EXPECT_EQ(none.labels.sizes().vec(), (std::vector<int64_t>{2, 64}));
  EXPECT_TRUE((none.labels == 3).all().item<bool>());
  EXPECT_TRUE((none.matched == -1).all().item<bool>());
  EXPECT_EQ(none.distances.sizes().vec(), (std::vector<int64_t>{2, 64, 4}));
  EXPECT_TRUE((none.centerness == 0).all().item<bool>());
  const auto no_images = assigner.assign(ps, {}, {}, 3);
  EXPECT_EQ(no_images.labels.sizes().vec(), (std::vector<int64_t>{0, 64}));
  EXPECT_EQ(no_images.num_positives, 0);

  // An image without GT in a batch: the other image's targets are those it gets alone.
  const auto alone = assigner.assign(ps, {box(1, 4, 27, 18)}, {labels_of({2})}, 3);
  const auto mixed = assigner.assign(ps, {torch::zeros({0, 4}), box(1, 4, 27, 18)},
                                     {labels_of({}), labels_of({2})}, 3);
  EXPECT_TRUE((mixed.labels[0] == 3).all().item<bool>());
  EXPECT_TRUE((mixed.matched[0] == -1).all().item<bool>());
  EXPECT_TRUE(torch::equal(mixed.labels[1], alone.labels[0]));
  EXPECT_TRUE(torch::equal(mixed.matched[1], alone.matched[0]));
  EXPECT_TRUE(torch::equal(mixed.distances[1], alone.distances[0]));
  EXPECT_TRUE(torch::equal(mixed.centerness[1], alone.centerness[0]));
  EXPECT_EQ(mixed.num_positives, 1);
}

TEST(ATSSAssigner, TopkLargerThanALevelTakesAllItsPoints) {
  // Stride 16, 2 x 2 points at 8 and 24; anchors of side 16. GT [0, 0, 20, 20], area 400:
  //   (8, 8) [0, 0, 16, 16]: 256 / 400 = 0.64; (24, 8) and (8, 24): 64 / 592 = 4/37;
  //   (24, 24): 16 / 640 = 1/40.
  // mean 0.22030, unbiased std 0.28253: threshold 0.50283; only (8, 8) is positive.
  const PointSet ps = grid({16}, {2});
  const auto gt = box(0, 0, 20, 20);
  const auto t9 = ATSSAssigner(ATSSAssignerOptions().topk(9).anchor_scale(1))
                      .assign(ps, {gt}, {labels_of({0})}, 1);
  EXPECT_EQ(positive_indices(t9, 0, 1), std::vector<int64_t>{point_index(ps, 8, 8)});
  EXPECT_TRUE(torch::equal(t9.distances[0][0], torch::tensor({8.f, 8.f, 12.f, 12.f})));
  EXPECT_NEAR(t9.centerness[0][0].item<float>(), 2.0 / 3, 1e-6);
  const auto t4 = ATSSAssigner(ATSSAssignerOptions().topk(4).anchor_scale(1))
                      .assign(ps, {gt}, {labels_of({0})}, 1);
  EXPECT_TRUE(torch::equal(t9.labels, t4.labels));
  EXPECT_TRUE(torch::equal(t9.distances, t4.distances));

  // Two levels, the coarse one (stride 32, one point at (16, 16), anchor [0, 0, 32, 32]) smaller
  // than topk: its point is a candidate of every GT. GT [0, 0, 32, 32]: the 4 level-0 anchors
  // have IoU 256 / 1024 = 0.25, the level-1 anchor equals the GT (IoU 1). mean 0.4, unbiased std
  // sqrt((4 * 0.0225 + 0.36) / 4) = 0.33541: threshold 0.73541; only the level-1 point is
  // positive.
  PointSet two = grid({16, 32}, {2, 1});
  const auto t = ATSSAssigner(ATSSAssignerOptions().topk(9).anchor_scale(1))
                     .assign(two, {box(0, 0, 32, 32)}, {labels_of({0})}, 1);
  EXPECT_EQ(positive_indices(t, 0, 1), std::vector<int64_t>{4});
  EXPECT_TRUE(torch::equal(t.distances[0][4], torch::tensor({16.f, 16.f, 16.f, 16.f})));
  EXPECT_NEAR(t.centerness[0][4].item<float>(), 1.0, 1e-6);
}

TEST(ATSSAssigner, SingleCandidateUsesZeroStd) {
  // One point, topk 1: the only candidate's IoU is the threshold (torch.std of one value is NaN,
  // which in mmdet leaves the GT without positives).
  const PointSet ps = grid({16}, {1});
  const auto t = ATSSAssigner(ATSSAssignerOptions().topk(1).anchor_scale(1))
                     .assign(ps, {box(2, 2, 12, 14)}, {labels_of({0})}, 1);
  EXPECT_EQ(t.num_positives, 1);
  EXPECT_TRUE(torch::equal(t.distances[0][0], torch::tensor({6.f, 6.f, 4.f, 6.f})));
}

TEST(ATSSAssigner, RejectsBadInputAndConfig) {
  const PointSet ps = grid({8}, {4});
  ATSSAssigner assigner;
  EXPECT_THROW(assigner.assign(ps, {torch::zeros({1, 3})}, {labels_of({0})}, 2), c10::Error);
  EXPECT_THROW(assigner.assign(ps, {box(0, 0, 8, 8)}, {labels_of({2})}, 2), c10::Error);
  EXPECT_THROW(assigner.assign(ps, {box(0, 0, 8, 8)}, {}, 2), c10::Error);
  EXPECT_THROW(assigner.assign(ps, {box(0, 0, NAN, 8)}, {labels_of({0})}, 2), c10::Error);
  PointSet bad = ps;
  bad.num_points = {15};
  EXPECT_THROW(assigner.assign(bad, {box(0, 0, 8, 8)}, {labels_of({0})}, 2), c10::Error);
  EXPECT_THROW(ATSSAssigner(ATSSAssignerOptions().topk(0)), c10::Error);

  auto error_of = [](const std::string& yaml) -> std::string {
    try {
      PointAssignerRegistry().build(Config::parse(yaml, "a.yaml"));
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("{type: ATSSAssigner, topk: 0}").find("topk: expected an integer >= 1"),
            std::string::npos);
  EXPECT_NE(error_of("{type: ATSSAssigner, anchor_scale: -1}").find("anchor_scale"),
            std::string::npos);
  EXPECT_NE(error_of("{type: ATSSAssigner, top_k: 3}").find("unknown key 'top_k'"),
            std::string::npos);
  auto built = std::dynamic_pointer_cast<ATSSAssigner>(PointAssignerRegistry().build(
      Config::parse("{type: ATSSAssigner, topk: 7, anchor_scale: 4}")));
  ASSERT_NE(built, nullptr);
  EXPECT_EQ(built->options().topk(), 7);
  EXPECT_EQ(built->options().anchor_scale(), 4.0);
}

// Slow per-GT reference (double precision, Alg. 1 of the ATSS paper with mmdet's details).
// Returns false when a near tie (k-th distance, threshold, or competing IoUs) makes the answer
// depend on rounding or on at::topk's tie order.
bool reference(const PointSet& ps, const at::Tensor& boxes, int64_t topk, double scale,
               std::vector<int64_t>& matched) {
  const int64_t n = boxes.size(0), num_points = ps.points.size(0);
  const auto pts = ps.points.to(torch::kDouble).contiguous();
  const auto bx = boxes.to(torch::kDouble);
  const double* xy = pts.data_ptr<double>();
  auto px = [&](int64_t i) { return xy[2 * i]; };
  auto py = [&](int64_t i) { return xy[2 * i + 1]; };
  std::vector<double> best(num_points, -1.0);
  matched.assign(num_points, -1);
  for (int64_t g = 0; g < n; ++g) {
    const double x1 = bx[g][0].item<double>(), y1 = bx[g][1].item<double>(),
                 x2 = bx[g][2].item<double>(), y2 = bx[g][3].item<double>();
    const double cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
    std::vector<int64_t> cand;
    std::vector<double> half;
    int64_t start = 0;
    for (size_t l = 0; l < ps.strides.size(); ++l) {
      std::vector<int64_t> idx(ps.num_points[l]);
      std::iota(idx.begin(), idx.end(), start);
      auto d2 = [&](int64_t i) { return std::pow(px(i) - cx, 2) + std::pow(py(i) - cy, 2); };
      std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return d2(a) < d2(b); });
      const int64_t k = std::min<int64_t>(topk, ps.num_points[l]);
      if (k < ps.num_points[l] && std::abs(d2(idx[k - 1]) - d2(idx[k])) < 1e-3) return false;
      for (int64_t j = 0; j < k; ++j) {
        cand.push_back(idx[j]);
        half.push_back(0.5 * scale * static_cast<double>(ps.strides[l]));
      }
      start += ps.num_points[l];
    }
    std::vector<double> iou(cand.size());
    for (size_t j = 0; j < cand.size(); ++j) {
      const double x = px(cand[j]), y = py(cand[j]), h = half[j];
      const double iw = std::max(0.0, std::min(x + h, x2) - std::max(x - h, x1));
      const double ih = std::max(0.0, std::min(y + h, y2) - std::max(y - h, y1));
      const double inter = iw * ih;
      iou[j] = inter / std::max(4 * h * h + (x2 - x1) * (y2 - y1) - inter, 1e-6);
    }
    const double k = static_cast<double>(iou.size());
    const double mean = std::accumulate(iou.begin(), iou.end(), 0.0) / k;
    double var = 0;
    for (double v : iou) var += (v - mean) * (v - mean);
    const double thr = mean + (iou.size() > 1 ? std::sqrt(var / (k - 1)) : 0.0);
    for (size_t j = 0; j < cand.size(); ++j) {
      const int64_t p = cand[j];
      const double margin = std::min({px(p) - x1, py(p) - y1, x2 - px(p), y2 - py(p)});
      if (std::abs(iou[j] - thr) < 1e-4 || std::abs(margin - 0.01) < 1e-4) return false;
      if (iou[j] < thr || margin <= 0.01) continue;
      if (std::abs(iou[j] - best[p]) < 1e-6) return false;
      if (iou[j] > best[p]) {
        best[p] = iou[j];
        matched[p] = g;
      }
    }
  }
  return true;
}

TEST(ATSSAssigner, MatchesAScalarReferenceOnRandomCases) {
  // 4 levels; the coarsest (2 x 2) and the next (4 x 4) have <= topk points.
  const PointSet ps = grid({8, 16, 32, 64}, {16, 8, 4, 2});
  const ATSSAssigner assigner;  // topk 9, anchor_scale 8
  const ATSSAssigner small(ATSSAssignerOptions().topk(3).anchor_scale(3));
  int compared = 0;
  for (int seed = 0; seed < 24; ++seed) {
    torch::manual_seed(seed);
    const auto& a = seed % 2 ? small : assigner;
    const int64_t n = seed % 8;
    const auto xy = torch::rand({n, 2}) * 100, wh = torch::rand({n, 2}) * 100 + 4;
    const auto boxes = torch::cat({xy, xy + wh}, 1);
    const auto labels = torch::randint(0, 4, {n}, torch::kLong);
    std::vector<int64_t> expected;
    if (!reference(ps, boxes, a.options().topk(), a.options().anchor_scale(), expected)) continue;
    ++compared;
    // The same image twice, next to an empty one, checks the batching too.
    const auto t =
        a.assign(ps, {boxes, torch::zeros({0, 4}), boxes}, {labels, labels_of({}), labels}, 4);
    for (int64_t img : {0, 2}) {
      const auto matched = t.matched[img];
      for (int64_t p = 0; p < ps.points.size(0); ++p) {
        ASSERT_EQ(matched[p].item<int64_t>(), expected[p])
            << "seed " << seed << " image " << img << " point " << p;
        if (expected[p] < 0) continue;
        EXPECT_EQ(t.labels[img][p].item<int64_t>(), labels[expected[p]].item<int64_t>());
        const auto b = boxes[expected[p]];
        const auto pt = ps.points[p];
        const auto d = torch::stack({pt[0] - b[0], pt[1] - b[1], b[2] - pt[0], b[3] - pt[1]});
        EXPECT_TRUE(torch::allclose(t.distances[img][p], d, 1e-5, 1e-4));
      }
    }
    EXPECT_TRUE((t.labels[1] == 4).all().item<bool>());
  }
  EXPECT_GE(compared, 20);
}

// ---- The ATSS detector: FCOS with ATSSAssigner by default -------------------------------

const char* kAtssModel =
    "{type: ATSS, num_classes: 8,"
    " backbone: {type: ResNet, depth: 18, base_channels: 32, frozen_bn: false, out_indices: [1, "
    "2, 3]},"
    " neck: {type: FPN, out_channels: 64, num_outs: 5},"
    " head: {type: FCOSHead, num_convs: 2, channels: 64, gn_groups: 16}}";

// Two 128 px images of the synthetic shapes data set (src/setdet/data/synthetic.h), normalised.
Batch synthetic_batch(int64_t num_classes) {
  Batch b;
  std::vector<at::Tensor> images;
  for (int64_t i = 0; i < 2; ++i) {
    const SyntheticImage img = render_synthetic_image(7, SyntheticSplit::kTrain, i, 128);
    const auto hwc = torch::from_blob(img.image.data, {128, 128, 3}, torch::kUInt8).clone();
    images.push_back((hwc.permute({2, 0, 1}).to(torch::kFloat) / 255.0 - 0.45) / 0.25);
    std::vector<float> xyxy;
    std::vector<int64_t> labels;
    for (const auto& o : img.objects) {
      xyxy.insert(xyxy.end(), {static_cast<float>(o.bbox[0]), static_cast<float>(o.bbox[1]),
                               static_cast<float>(o.bbox[0] + o.bbox[2]),
                               static_cast<float>(o.bbox[1] + o.bbox[3])});
      labels.push_back(o.category_id - 1);
      EXPECT_LT(labels.back(), num_classes);
    }
    b.boxes.push_back(torch::tensor(xyxy).view({-1, 4}));
    b.labels.push_back(torch::tensor(labels, torch::kLong));
    ImageMeta m;
    m.original_hw = m.input_hw = m.padded_hw = {128, 128};
    b.metas.push_back(m);
  }
  b.images = torch::stack(images);
  return b;
}

TEST(ATSSDetector, DefaultsToATSSAssignerAndTrainsOnSyntheticData) {
  torch::manual_seed(0);
  const int64_t num_classes = static_cast<int64_t>(synthetic_class_names().size());
  ASSERT_LE(num_classes, 8);
  auto model = std::dynamic_pointer_cast<FCOSDetector>(
      DetectorRegistry().build(Config::parse(kAtssModel, "atss.yaml")));
  ASSERT_NE(model, nullptr);
  model->train();
  const Batch batch = synthetic_batch(num_classes);

  // The positives counted by the detector are ATSSAssigner's (default topk 9, anchor_scale 8).
  {
    torch::NoGradGuard no_grad;
    const auto out = model->forward(batch.images);
    std::vector<std::array<int64_t, 2>> sizes;
    for (const auto& m : out.at("cls_logits")) sizes.push_back({m.size(2), m.size(3)});
    const PointSet ps = model->head().points(sizes, batch.images.options());
    const auto expected = ATSSAssigner().assign(ps, batch.boxes, batch.labels, 8).num_positives;
    const auto fcos = FCOSAssigner().assign(ps, batch.boxes, batch.labels, 8).num_positives;
    EXPECT_GT(expected, 0);
    EXPECT_NE(expected, fcos);
    EXPECT_EQ(model->losses(batch).at("num_pos").item<double>(), static_cast<double>(expected));
  }

  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  double first = 0, last = 0;
  for (int it = 0; it < 25; ++it) {
    auto losses = model->losses(batch);
    const auto total = losses["loss_cls"] + losses["loss_bbox"] + losses["loss_centerness"];
    ASSERT_TRUE(std::isfinite(total.item<double>())) << "iteration " << it;
    if (it == 0) first = total.item<double>();
    last = total.item<double>();
    opt.zero_grad();
    total.backward();
    opt.step();
  }
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
}

TEST(ATSSDetector, ConfigsBuild) {
  const std::string root = std::string(SETDET_TEST_DATA_DIR) + "/../../configs/atss/";
  const Config demo = Config::load(root + "atss_r18h_fpn64_256_demo.yaml");
  EXPECT_EQ(demo["model"].get<std::string>("type"), "ATSS");
  EXPECT_TRUE(demo.has("data") && demo.has("optimizer") && demo.has("runner"));
  EXPECT_NE(DetectorRegistry().build(demo["model"]), nullptr);
  const Config coco = Config::load(root + "atss_r50_fpn_1x_coco.yaml");
  EXPECT_EQ(coco["model"]["assigner"].get<int64_t>("topk"), 9);
  auto model = std::dynamic_pointer_cast<FCOSDetector>(DetectorRegistry().build(coco["model"]));
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->num_classes(), 80);
  // An explicit assigner is kept.
  EXPECT_NE(DetectorRegistry().build(Config::parse(
                std::string(kAtssModel).insert(1, "assigner: {type: ATSSAssigner, topk: 3}, "))),
            nullptr);
}

}  // namespace
}  // namespace setdet
