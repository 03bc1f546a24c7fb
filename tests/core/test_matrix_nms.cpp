#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "setdet/core/dedup/matrix_nms.h"
#include "setdet/core/error.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

// 12 normalised boxes (box 5 = box 2 shifted by 0.01) and a [3 classes, 12 boxes] score matrix,
// float32, from numpy default_rng(2024).
const std::vector<float> kBoxes = {
    0.33791565895080566,  0.10716160386800766, 0.5231786370277405,  0.3168596029281616,
    0.15472601354122162,  0.3997330367565155,  0.5775988101959229,  0.6070792078971863,
    0.497901052236557,    0.07111591100692749, 0.7051262259483337,  0.19946862757205963,
    0.03936276584863663,  0.09041190892457962, 0.3262462913990021,  0.2960940897464752,
    0.17982344329357147,  0.08480962365865707, 0.6354002356529236,  0.2993369400501251,
    0.5079010725021362,   0.08111590892076492, 0.7151262164115906,  0.20946863293647766,
    0.05269283801317215,  0.2828655242919922,  0.3399004638195038,  0.7688376307487488,
    0.002314821584150195, 0.23255960643291473, 0.4616057574748993,  0.3641733229160309,
    0.4878110885620117,   0.39971423149108887, 0.6858928203582764,  0.5736290216445923,
    0.29841119050979614,  0.16267482936382294, 0.7606011629104614,  0.4842076301574707,
    0.1031719520688057,   0.22136278450489044, 0.35183554887771606, 0.6549215912818909,
    0.13902069628238678,  0.4374789297580719,  0.37852972745895386, 0.8101405501365662};
const std::vector<float> kScores = {
    0.22835056483745575, 0.023872289806604385, 0.6961190104484558,   0.3368527591228485,
    0.34199258685112,    0.2758408784866333,   0.2513437271118164,   0.5701055526733398,
    0.3338562250137329,  0.42559778690338135,  0.20192980766296387,  0.5051596760749817,
    0.5853872299194336,  0.420300155878067,    0.40344685316085815,  0.9439428448677063,
    0.04821237921714783, 0.3260737955570221,   0.5189313292503357,   0.5984541773796082,
    0.04229510575532913, 0.24125678837299347,  0.054256342351436615, 0.007730759214609861,
    0.3220977783203125,  0.40699872374534607,  0.859174370765686,    0.013476453721523285,
    0.7162355780601501,  0.4569534957408905,   0.5890750288963318,   0.14639441668987274,
    0.8019589781761169,  0.3793029189109802,   0.4098156690597534,   0.56582111120224};
constexpr size_t kNumBoxes = 12, kNumClasses = 3;

// Paddle's (box, class) score matrix as flat entries: entry c * 12 + m is box m, class c.
struct FlatInput {
  std::vector<float> boxes;
  std::vector<int64_t> labels;
  FlatInput() {
    for (size_t c = 0; c < kNumClasses; ++c) {
      boxes.insert(boxes.end(), kBoxes.begin(), kBoxes.end());
      labels.insert(labels.end(), kNumBoxes, static_cast<int64_t>(c));
    }
  }
};

struct GoldenCase {
  const char* name;
  MatrixNmsKernel kernel;
  double score_threshold, post_threshold;
  int64_t pre_top_k, keep_top_k;
  std::vector<int64_t> indices;  // class * 12 + box
  std::vector<double> scores;
};

// Golden values: the numpy reference multiclass_nms / matrix_nms of PaddlePaddle's
// test/legacy_test/test_matrix_nms_op.py (Paddle commit 124ca7f495b2), background_label -1,
// normalized, gaussian_sigma 2.0, run with numpy 1.24 on kBoxes / kScores.
const std::vector<GoldenCase> kGolden = {
    {"gaussian",
     MatrixNmsKernel::kGaussian,
     0.1,
     0.05,
     -1,
     -1,
     {15, 26, 32, 2, 28, 30, 12, 7,  19, 18, 11, 9,  35, 14, 13,
      25, 33, 8,  4, 3,  24, 21, 34, 0,  6,  10, 31, 29, 17, 5},
     {0.9439428448677063,  0.859174370765686,   0.8019589781761169,  0.6961190104484558,
      0.6866562366485596,  0.5890750288963318,  0.5853872299194336,  0.5701055526733398,
      0.5608808994293213,  0.5185738801956177,  0.5051596760749817,  0.41458261013031006,
      0.4042327404022217,  0.40344685316085815, 0.40071502327919006, 0.3748033344745636,
      0.3559426963329315,  0.3338562250137329,  0.3158510625362396,  0.3157038390636444,
      0.2620179057121277,  0.2324690967798233,  0.22243641316890717, 0.197948157787323,
      0.1795191466808319,  0.15341413021087646, 0.14140307903289795, 0.13454459607601166,
      0.09627139568328857, 0.08121810853481293}},
    {"linear",
     MatrixNmsKernel::kLinear,
     0.1,
     0.05,
     -1,
     -1,
     {15, 26, 32, 2, 28, 30, 12, 7, 18, 11, 19, 14, 13, 9,  33,
      35, 8,  25, 4, 3,  24, 21, 0, 34, 6,  10, 31, 29, 17, 5},
     {0.9439428448677063,  0.859174370765686,   0.8019589781761169,  0.6961190104484558,
      0.6122267842292786,  0.5890750288963318,  0.5853872299194336,  0.5701055526733398,
      0.5092993974685669,  0.5051596760749817,  0.49069806933403015, 0.40344685316085815,
      0.38585537672042847, 0.37686505913734436, 0.34113451838493347, 0.3375094532966614,
      0.3338562250137329,  0.3279409110546112,  0.2923298180103302,  0.27619993686676025,
      0.243961364030838,   0.22418908774852753, 0.1919838786125183,  0.18532530963420868,
      0.14824075996875763, 0.13996125757694244, 0.12848784029483795, 0.09966875612735748,
      0.07385211437940598, 0.06016523763537407}},
    {"gaussian_topk",
     MatrixNmsKernel::kGaussian,
     0.2,
     0.1,
     5,
     12,
     {15, 26, 32, 2, 28, 30, 12, 7, 19, 18, 11, 9},
     {0.9439428448677063, 0.859174370765686, 0.8019589781761169, 0.6961190104484558,
      0.6866562366485596, 0.5890750288963318, 0.5853872299194336, 0.5701055526733398,
      0.5608808994293213, 0.5185738801956177, 0.5051596760749817, 0.41458261013031006}},
    {"linear_topk",
     MatrixNmsKernel::kLinear,
     0.0,
     0.3,
     6,
     -1,
     {15, 26, 32, 2, 28, 30, 12, 7, 18, 11, 19, 14, 13, 9, 35},
     {0.9439428448677063, 0.859174370765686, 0.8019589781761169, 0.6961190104484558,
      0.6122267842292786, 0.5890750288963318, 0.5853872299194336, 0.5701055526733398,
      0.5092993974685669, 0.5051596760749817, 0.49069806933403015, 0.40344685316085815,
      0.38585537672042847, 0.37686505913734436, 0.3375094532966614}},
};

template <typename T>
void check_golden(double tol) {
  const FlatInput in;
  const std::vector<T> boxes(in.boxes.begin(), in.boxes.end());
  const std::vector<T> scores(kScores.begin(), kScores.end());
  for (const GoldenCase& c : kGolden) {
    MatrixNmsOptions o;
    o.kernel = c.kernel;
    o.score_threshold = c.score_threshold;
    o.post_threshold = c.post_threshold;
    o.pre_top_k = c.pre_top_k;
    o.keep_top_k = c.keep_top_k;
    const auto r = matrix_nms(boxes.data(), scores.data(), in.labels.data(), scores.size(), o);
    EXPECT_EQ(r.indices, c.indices) << c.name;
    ASSERT_EQ(r.scores.size(), c.scores.size()) << c.name;
    for (size_t i = 0; i < c.scores.size(); ++i) {
      EXPECT_NEAR(r.scores[i], c.scores[i], tol) << c.name << " " << i;
    }
  }
}

TEST(MatrixNms, MatchesPaddleReferenceFloat) { check_golden<float>(1e-6); }

TEST(MatrixNms, MatchesPaddleReferenceDouble) { check_golden<double>(1e-6); }

TEST(MatrixNms, HandComputedDecay) {
  const std::vector<double> b = {0, 0, 2, 1, 0, 0, 1, 1, 0, 0, 1.5, 1};
  const std::vector<double> s = {0.9, 0.8, 0.7};
  // order by score: 0, 1, 2. iou(0,1) = 0.5, iou(0,2) = 0.75, iou(1,2) = 2/3.
  // max iou of each with a better box: m0 = 0, m1 = 0.5, m2 = 0.75.
  MatrixNmsOptions o;
  o.kernel = MatrixNmsKernel::kLinear;
  auto r = matrix_nms(b.data(), s.data(), nullptr, 3, o);
  // linear: d1 = (1 - 0.5) / 1 = 0.5; d2 = min((1 - 0.75) / 1, (1 - 2/3) / (1 - 0.5)) = 0.25
  ASSERT_EQ(r.indices, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_DOUBLE_EQ(r.scores[0], 0.9);
  EXPECT_DOUBLE_EQ(r.scores[1], 0.8 * 0.5);
  EXPECT_DOUBLE_EQ(r.scores[2], 0.7 * 0.25);
  o.kernel = MatrixNmsKernel::kGaussian;
  o.sigma = 2.0;
  r = matrix_nms(b.data(), s.data(), nullptr, 3, o);
  const double d1 = std::exp(-2.0 * 0.25);
  const double d2 = std::min(std::exp(-2.0 * 0.5625), std::exp((0.25 - 4.0 / 9.0) * 2.0));
  ASSERT_EQ(r.indices, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_NEAR(r.scores[1], 0.8 * d1, 1e-15);
  EXPECT_NEAR(r.scores[2], 0.7 * d2, 1e-15);
}

TEST(MatrixNms, EmptyOneAndIdenticalBoxes) {
  EXPECT_TRUE(matrix_nms<float>(nullptr, nullptr, nullptr, 0).indices.empty());
  const std::vector<float> b = {0.1f, 0.1f, 0.4f, 0.4f, 0.1f, 0.1f,
                                0.4f, 0.4f, 0.1f, 0.1f, 0.4f, 0.4f};
  const std::vector<float> s = {0.5f, 0.9f, 0.7f};
  auto r = matrix_nms(b.data(), s.data(), nullptr, 1);
  EXPECT_EQ(r.indices, std::vector<int64_t>{0});
  EXPECT_EQ(r.scores, std::vector<float>{0.5f});
  // identical boxes, linear kernel: both lower boxes decay to (1 - 1) / (1 - 0) = 0 and are
  // dropped (<= post_threshold 0); the term of the second box for the third divides by 1 - 1 = 0
  // and is skipped, as Paddle's std::min ignores its inf / NaN
  MatrixNmsOptions o;
  o.kernel = MatrixNmsKernel::kLinear;
  r = matrix_nms(b.data(), s.data(), nullptr, 3, o);
  EXPECT_EQ(r.indices, (std::vector<int64_t>{1}));
  EXPECT_EQ(r.scores, (std::vector<float>{0.9f}));
  // gaussian: decay exp(-2) for the second, exp((1 - 1) * 2) = 1 from the second for the third
  // but exp(-2) from the first
  r = matrix_nms(b.data(), s.data(), nullptr, 3);
  ASSERT_EQ(r.indices, (std::vector<int64_t>{1, 2, 0}));
  EXPECT_FLOAT_EQ(r.scores[1], 0.7f * std::exp(-2.0f));
  EXPECT_FLOAT_EQ(r.scores[2], 0.5f * std::exp(-2.0f));
}

TEST(MatrixNms, ClassesAreIndependentAndZeroAreaIsHarmless) {
  const std::vector<float> b = {0, 0, 1, 1, 0, 0, 1, 1, 0.5f, 0.5f, 0.5f, 0.5f};
  const std::vector<float> s = {0.9f, 0.8f, 0.7f};
  const std::vector<int64_t> labels = {3, 1, 3};
  const auto r = matrix_nms(b.data(), s.data(), labels.data(), 3);
  EXPECT_EQ(r.indices, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(r.scores, (std::vector<float>{0.9f, 0.8f, 0.7f}));
}

TEST(MatrixNms, ThreadCountDoesNotChangeResult) {
  std::vector<double> b, s;
  uint64_t x = 88172645463325252ull;
  auto next = [&x]() {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return static_cast<double>(x % 1000000) / 1e6;
  };
  for (int i = 0; i < 600; ++i) {
    const double cx = next(), cy = next(), w = 0.05 + 0.2 * next(), h = 0.05 + 0.2 * next();
    b.insert(b.end(), {cx, cy, cx + w, cy + h});
    s.push_back(next());
  }
  set_num_threads(1);
  const auto one = matrix_nms(b.data(), s.data(), nullptr, 600);
  set_num_threads(4);
  const auto four = matrix_nms(b.data(), s.data(), nullptr, 600);
  set_num_threads(0);
  EXPECT_EQ(one.indices, four.indices);
  EXPECT_EQ(one.scores, four.scores);
  EXPECT_EQ(one.indices.size(), 600u);
}

TEST(MatrixNms, RejectsBadInput) {
  const std::vector<float> b = {0, 0, 1, 1};
  std::vector<float> s = {0.5f};
  auto expect_message = [&](const std::vector<float>& boxes, const MatrixNmsOptions& o,
                            const std::string& message) {
    try {
      matrix_nms(boxes.data(), s.data(), nullptr, 1, o);
      ADD_FAILURE() << "expected setdet::Error: " << message;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "matrix_nms: " + message);
    }
  };
  MatrixNmsOptions o;
  o.sigma = 0;
  expect_message(b, o, "sigma must be a finite number > 0, got 0");
  o = MatrixNmsOptions();
  o.pre_top_k = -3;
  expect_message(b, o, "pre_top_k must be -1 (all) or >= 0, got -3");
  o = MatrixNmsOptions();
  o.post_threshold = std::numeric_limits<double>::infinity();
  expect_message(b, o, "post_threshold must be finite, got inf");
  std::vector<float> bad = b;
  bad[1] = std::numeric_limits<float>::quiet_NaN();
  expect_message(bad, {}, "boxes[0] has a non-finite coordinate (nan)");
  s[0] = -std::numeric_limits<float>::infinity();
  expect_message(b, {}, "scores[0] is not finite (-inf)");
  try {
    parse_matrix_nms_kernel("box");
    ADD_FAILURE() << "expected setdet::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "matrix_nms: kernel must be \"gaussian\" or \"linear\", got \"box\"");
  }
  EXPECT_EQ(parse_matrix_nms_kernel("linear"), MatrixNmsKernel::kLinear);
}

}  // namespace
}  // namespace setdet
