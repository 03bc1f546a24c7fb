#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "setdet/core/dedup/nms.h"
#include "setdet/core/error.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

// Slow, obviously correct greedy NMS: the loop of torchvision's CPU kernel (stable sort by
// descending score, each kept box suppresses later boxes with IoU > thr), plus the setdet
// options applied in their documented order.
template <typename T>
std::vector<int64_t> reference_nms(const std::vector<T>& boxes, const std::vector<T>& scores,
                                   const std::vector<int64_t>& subset, const NmsOptions& o) {
  std::vector<int64_t> order;
  for (int64_t i : subset) {
    if (scores[i] > static_cast<T>(o.score_threshold)) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  if (o.pre_nms_top_k >= 0 && order.size() > static_cast<size_t>(o.pre_nms_top_k)) {
    order.resize(static_cast<size_t>(o.pre_nms_top_k));
  }
  std::vector<bool> suppressed(order.size(), false);
  std::vector<int64_t> keep;
  for (size_t a = 0; a < order.size(); ++a) {
    if (suppressed[a]) continue;
    keep.push_back(order[a]);
    if (o.max_output >= 0 && keep.size() == static_cast<size_t>(o.max_output)) break;
    const T* p = &boxes[4 * order[a]];
    const T pa = (p[2] - p[0]) * (p[3] - p[1]);
    for (size_t b = a + 1; b < order.size(); ++b) {
      const T* q = &boxes[4 * order[b]];
      const T w = std::max(T(0), std::min(p[2], q[2]) - std::max(p[0], q[0]));
      const T h = std::max(T(0), std::min(p[3], q[3]) - std::max(p[1], q[1]));
      const T inter = w * h;
      const T ovr = inter / (pa + (q[2] - q[0]) * (q[3] - q[1]) - inter);
      if (static_cast<double>(ovr) > o.iou_threshold) suppressed[b] = true;
    }
  }
  if (o.max_output == 0) keep.clear();
  return keep;
}

template <typename T>
std::vector<int64_t> reference_batched_nms(const std::vector<T>& boxes,
                                           const std::vector<T>& scores,
                                           const std::vector<int64_t>& labels,
                                           const NmsOptions& o) {
  std::map<int64_t, std::vector<int64_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(i);
  std::vector<int64_t> keep;
  for (const auto& kv : by_class) {
    for (int64_t i : reference_nms(boxes, scores, kv.second, o)) keep.push_back(i);
  }
  std::sort(keep.begin(), keep.end());
  std::stable_sort(keep.begin(), keep.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return keep;
}

std::vector<int64_t> all_indices(size_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

enum class Layout { kUniform, kClustered, kCrowded, kInteger };

// kClustered is the benchmark generator: K = max(1, N / 50) centres in [0, 2000]^2, base sizes
// in [20, 200], N(0, 10) jitter, sizes * U(0.9, 1.1). kCrowded: few centres, many near-copies,
// some exact duplicates and zero-area boxes. kInteger: small integer coordinates (exact IoU ties
// with the threshold happen) and scores quantised to 0.1 (score ties).
template <typename T>
void make_boxes(Layout layout, size_t n, uint32_t seed, std::vector<T>* boxes,
                std::vector<T>* scores) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u01(0, 1);
  boxes->resize(4 * n);
  scores->resize(n);
  const size_t k = std::max<size_t>(1, layout == Layout::kCrowded ? n / 300 : n / 50);
  std::vector<double> cx(k), cy(k), bw(k), bh(k);
  for (size_t c = 0; c < k; ++c) {
    cx[c] = 2000 * u01(rng), cy[c] = 2000 * u01(rng);
    bw[c] = 20 + 180 * u01(rng), bh[c] = 20 + 180 * u01(rng);
  }
  std::normal_distribution<double> jitter(0, layout == Layout::kCrowded ? 3 : 10);
  for (size_t i = 0; i < n; ++i) {
    T* b = &(*boxes)[4 * i];
    if (layout == Layout::kUniform) {
      const double x = 500 * u01(rng), y = 500 * u01(rng);
      const double w = 1 + 99 * u01(rng), h = 1 + 99 * u01(rng);
      b[0] = T(x), b[1] = T(y), b[2] = T(x + w), b[3] = T(y + h);
    } else if (layout == Layout::kInteger) {
      const int x = static_cast<int>(40 * u01(rng)), y = static_cast<int>(40 * u01(rng));
      const int w = 1 + static_cast<int>(8 * u01(rng)), h = 1 + static_cast<int>(8 * u01(rng));
      b[0] = T(x), b[1] = T(y), b[2] = T(x + w), b[3] = T(y + h);
    } else {
      const size_t c = static_cast<size_t>(u01(rng) * static_cast<double>(k)) % k;
      const double x = cx[c] + jitter(rng), y = cy[c] + jitter(rng);
      const double w = bw[c] * (0.9 + 0.2 * u01(rng)), h = bh[c] * (0.9 + 0.2 * u01(rng));
      b[0] = T(x - w / 2), b[1] = T(y - h / 2), b[2] = T(x + w / 2), b[3] = T(y + h / 2);
      if (layout == Layout::kCrowded && i > 0 && u01(rng) < 0.1) {
        std::copy(b - 4, b, b);  // exact duplicate of the previous box
      }
      if (layout == Layout::kCrowded && u01(rng) < 0.03) b[2] = b[0];  // zero width
    }
    (*scores)[i] = layout == Layout::kInteger ? T(std::floor(10 * u01(rng)) / 10) : T(u01(rng));
  }
}

TEST(Nms, EmptyInputReturnsEmpty) {
  EXPECT_TRUE(nms<float>(nullptr, nullptr, 0).empty());
  EXPECT_TRUE(batched_nms<float>(nullptr, nullptr, nullptr, 0).empty());
}

TEST(Nms, OneBox) {
  const std::vector<float> b = {1, 2, 3, 4}, s = {0.3f};
  EXPECT_EQ(nms(b.data(), s.data(), 1), std::vector<int64_t>{0});
  NmsOptions o;
  o.score_threshold = 0.3;  // score <= threshold is dropped
  EXPECT_TRUE(nms(b.data(), s.data(), 1, o).empty());
}

TEST(Nms, IdenticalBoxesKeepTheFirstOfTheBest) {
  const std::vector<double> b = {0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10};
  const std::vector<double> s = {0.5, 0.9, 0.9, 0.1};
  EXPECT_EQ(nms(b.data(), s.data(), 4), std::vector<int64_t>{1});
  NmsOptions o;
  o.iou_threshold = 1.0;  // IoU 1 is not > 1: nothing suppressed
  EXPECT_EQ(nms(b.data(), s.data(), 4, o), (std::vector<int64_t>{1, 2, 0, 3}));
}

TEST(Nms, ScoreTiesKeepInputOrder) {
  // three disjoint boxes, all with the same score
  const std::vector<float> b = {0, 0, 1, 1, 5, 5, 6, 6, 10, 10, 11, 11};
  const std::vector<float> s = {0.5f, 0.5f, 0.5f};
  EXPECT_EQ(nms(b.data(), s.data(), 3), (std::vector<int64_t>{0, 1, 2}));
}

TEST(Nms, IouEqualToThresholdDoesNotSuppress) {
  // IoU of [0,0,4,1] and [0,0,2,1] is exactly 2 / 4
  const std::vector<float> b = {0, 0, 4, 1, 0, 0, 2, 1};
  const std::vector<float> s = {0.9f, 0.8f};
  NmsOptions o;
  o.iou_threshold = 0.5;
  EXPECT_EQ(nms(b.data(), s.data(), 2, o), (std::vector<int64_t>{0, 1}));
  o.iou_threshold = 0.49;
  EXPECT_EQ(nms(b.data(), s.data(), 2, o), (std::vector<int64_t>{0}));
}

TEST(Nms, ZeroAreaBoxesNeverSuppressNorAreSuppressed) {
  const std::vector<float> b = {0, 0, 10, 10, 5, 5, 5, 5, 0, 0, 10, 0, 5, 5, 5, 5, 8, 8, 2, 2};
  const std::vector<float> s = {0.1f, 0.9f, 0.8f, 0.7f, 0.6f};
  NmsOptions o;
  o.iou_threshold = 0.0;
  EXPECT_EQ(nms(b.data(), s.data(), 5, o), (std::vector<int64_t>{1, 2, 3, 4, 0}));
}

TEST(Nms, OptionsScoreThresholdTopKMaxOutput) {
  // five disjoint boxes
  std::vector<float> b, s = {0.1f, 0.5f, 0.3f, 0.9f, 0.7f};
  for (int i = 0; i < 5; ++i) b.insert(b.end(), {10.f * i, 0, 10.f * i + 5, 5});
  NmsOptions o;
  o.score_threshold = 0.3;
  EXPECT_EQ(nms(b.data(), s.data(), 5, o), (std::vector<int64_t>{3, 4, 1}));
  o = NmsOptions();
  o.pre_nms_top_k = 2;
  EXPECT_EQ(nms(b.data(), s.data(), 5, o), (std::vector<int64_t>{3, 4}));
  o = NmsOptions();
  o.max_output = 4;
  EXPECT_EQ(nms(b.data(), s.data(), 5, o), (std::vector<int64_t>{3, 4, 1, 2}));
  o.max_output = 0;
  EXPECT_TRUE(nms(b.data(), s.data(), 5, o).empty());
}

// Golden values: torchvision 0.14.1 (Debian python3-torchvision) ops.nms / ops.batched_nms on
// integer boxes with scores rounded to 0.01 (float32; includes score ties).
TEST(Nms, MatchesTorchvisionGolden) {
  const std::vector<float> b = {20, 24, 26, 34, 0, 24, 14, 36, 14, 15, 28, 30, 18, 8,  32, 13,
                                29, 1,  48, 14, 8, 11, 26, 20, 17, 12, 27, 30, 3,  1,  10, 6,
                                0,  1,  10, 16, 4, 29, 10, 47, 5,  19, 15, 27, 22, 7,  35, 25,
                                8,  13, 26, 31, 7, 29, 16, 34, 5,  26, 21, 41, 23, 25, 39, 30};
  const std::vector<float> s = {0.5f,  0.44f, 0.2f,  0.32f, 0.81f, 0.32f, 0.15f, 0.7f,
                                0.45f, 0.8f,  0.24f, 0.32f, 0.8f,  0.51f, 0.51f, 0.24f};
  const std::vector<int64_t> labels = {2, 0, 0, 2, 2, 0, 2, 2, 1, 1, 2, 2, 2, 1, 0, 2};
  NmsOptions o;
  o.iou_threshold = 0.3;
  EXPECT_EQ(nms(b.data(), s.data(), 16, o),
            (std::vector<int64_t>{4, 9, 12, 7, 13, 14, 0, 8, 1, 3, 11, 10, 15}));
  EXPECT_EQ(batched_nms(b.data(), s.data(), labels.data(), 16, o),
            (std::vector<int64_t>{4, 9, 12, 7, 13, 14, 0, 8, 1, 3, 5, 11, 10, 15, 2}));
  o.iou_threshold = 0.5;
  EXPECT_EQ(nms(b.data(), s.data(), 16, o),
            (std::vector<int64_t>{4, 9, 12, 7, 13, 14, 0, 8, 1, 3, 5, 11, 10, 15, 6}));
  EXPECT_EQ(batched_nms(b.data(), s.data(), labels.data(), 16, o),
            (std::vector<int64_t>{4, 9, 12, 7, 13, 14, 0, 8, 1, 3, 5, 11, 10, 15, 2, 6}));
}

template <typename T>
void expect_error(const std::vector<T>& b, const std::vector<T>& s, const NmsOptions& o,
                  const std::string& nms_message) {
  try {
    nms(b.data(), s.data(), s.size(), o);
    ADD_FAILURE() << "nms: expected setdet::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "nms: " + nms_message);
  }
  const std::vector<int64_t> labels(s.size(), 0);
  try {
    batched_nms(b.data(), s.data(), labels.data(), s.size(), o);
    ADD_FAILURE() << "batched_nms: expected setdet::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "batched_nms: " + nms_message);
  }
}

TEST(Nms, RejectsNonFiniteInputAndBadOptions) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> b = {0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1};
  std::vector<float> s = {0.1f, 0.2f, 0.3f, 0.4f};
  NmsOptions o;
  b[13] = nan;
  expect_error(b, s, o, "boxes[3] has a non-finite coordinate (nan)");
  b[13] = 0;
  b[2] = -inf;
  expect_error(b, s, o, "boxes[0] has a non-finite coordinate (-inf)");
  b[2] = 1;
  s[1] = inf;
  expect_error(b, s, o, "scores[1] is not finite (inf)");
  s[1] = 0.2f;
  o.iou_threshold = 1.5;
  expect_error(b, s, o, "iou_threshold must be in [0, 1], got 1.5");
  o.iou_threshold = -0.1;
  expect_error(b, s, o, "iou_threshold must be in [0, 1], got -0.1");
  o.iou_threshold = std::nan("");
  expect_error(b, s, o, "iou_threshold must be in [0, 1], got nan");
  o = NmsOptions();
  o.score_threshold = std::nan("");
  expect_error(b, s, o, "score_threshold must be a number, got nan");
  o = NmsOptions();
  o.pre_nms_top_k = -2;
  expect_error(b, s, o, "pre_nms_top_k must be -1 (all) or >= 0, got -2");
  o = NmsOptions();
  o.max_output = -5;
  expect_error(b, s, o, "max_output must be -1 (all) or >= 0, got -5");
  // bad thresholds are rejected even for empty input
  o = NmsOptions();
  o.iou_threshold = 2;
  EXPECT_THROW(nms<float>(nullptr, nullptr, 0, o), Error);
}

template <typename T>
void compare_with_reference(Layout layout, size_t n, uint32_t seed, const NmsOptions& o) {
  std::vector<T> b, s;
  make_boxes(layout, n, seed, &b, &s);
  const auto expected = reference_nms(b, s, all_indices(n), o);
  ASSERT_EQ(nms(b.data(), s.data(), n, o), expected)
      << "layout " << static_cast<int>(layout) << " n " << n << " seed " << seed << " thr "
      << o.iou_threshold;
  std::mt19937 rng(seed + 1);
  std::vector<int64_t> labels(n);
  for (auto& l : labels) l = static_cast<int64_t>(rng() % 7) - 2;  // negative labels too
  ASSERT_EQ(batched_nms(b.data(), s.data(), labels.data(), n, o),
            reference_batched_nms(b, s, labels, o))
      << "batched: layout " << static_cast<int>(layout) << " n " << n << " seed " << seed;
}

TEST(Nms, OptimisedMatchesReferenceOnManySeeds) {
  const Layout layouts[] = {Layout::kUniform, Layout::kClustered, Layout::kCrowded,
                            Layout::kInteger};
  const size_t sizes[] = {2, 17, 150, 400, 1500, 3000};
  const double thresholds[] = {0.0, 0.3, 0.5, 0.7, 1.0};
  uint32_t seed = 100;
  for (const Layout layout : layouts) {
    for (const size_t n : sizes) {
      for (const double thr : thresholds) {
        if (n == 3000 && thr != 0.5) continue;
        NmsOptions o;
        o.iou_threshold = thr;
        compare_with_reference<float>(layout, n, seed++, o);
      }
    }
  }
}

TEST(Nms, OptimisedMatchesReferenceDoubleAndOptions) {
  uint32_t seed = 900;
  for (const Layout layout : {Layout::kClustered, Layout::kCrowded, Layout::kInteger}) {
    for (const size_t n : {300, 2000}) {
      NmsOptions o;
      o.iou_threshold = 0.45;
      compare_with_reference<double>(layout, n, seed++, o);
      o.score_threshold = 0.25;
      o.pre_nms_top_k = static_cast<int64_t>(n / 2);
      o.max_output = 37;
      compare_with_reference<float>(layout, n, seed++, o);
      compare_with_reference<double>(layout, n, seed++, o);
    }
  }
}

TEST(Nms, MixedScalesAndFarApartBoxes) {
  // boxes from 1e-3 to 1e4 wide, spread over a large extent, exercise many grid levels
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u01(0, 1);
  const size_t n = 2500;
  std::vector<double> b(4 * n), s(n);
  for (size_t i = 0; i < n; ++i) {
    const double side = std::pow(10.0, -3 + 7 * u01(rng));
    const double x = 1e5 * u01(rng), y = (i % 3 == 0 ? 1e5 : 50) * u01(rng);
    b[4 * i] = x, b[4 * i + 1] = y;
    b[4 * i + 2] = x + side * (0.5 + u01(rng)), b[4 * i + 3] = y + side * (0.5 + u01(rng));
    s[i] = u01(rng);
  }
  for (const double thr : {0.0, 0.2, 0.6}) {
    NmsOptions o;
    o.iou_threshold = thr;
    EXPECT_EQ(nms(b.data(), s.data(), n, o), reference_nms(b, s, all_indices(n), o)) << thr;
  }
}

TEST(BatchedNms, ClassesAreIndependentAndOrderIsByScore) {
  // the same two overlapping boxes in classes 5 and -1: each class keeps its best
  const std::vector<float> b = {0, 0, 10, 10, 1, 1, 10, 10, 0, 0, 10, 10, 1, 1, 10, 10};
  const std::vector<float> s = {0.9f, 0.8f, 0.7f, 0.95f};
  const std::vector<int64_t> labels = {5, 5, -1, -1};
  EXPECT_EQ(batched_nms(b.data(), s.data(), labels.data(), 4), (std::vector<int64_t>{3, 0}));
  NmsOptions o;
  o.max_output = 1;  // per class
  o.score_threshold = 0.75;
  EXPECT_EQ(batched_nms(b.data(), s.data(), labels.data(), 4, o), (std::vector<int64_t>{3, 0}));
}

TEST(BatchedNms, ThreadCountDoesNotChangeResult) {
  std::vector<float> b, s;
  make_boxes(Layout::kClustered, 5000, 11, &b, &s);
  std::vector<int64_t> labels(5000);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>(i * 7919 % 80);
  set_num_threads(1);
  const auto one = batched_nms(b.data(), s.data(), labels.data(), 5000);
  set_num_threads(3);
  const auto three = batched_nms(b.data(), s.data(), labels.data(), 5000);
  set_num_threads(0);
  EXPECT_EQ(one, three);
  EXPECT_EQ(one, reference_batched_nms(b, s, labels, NmsOptions()));
}

}  // namespace
}  // namespace setdet
