// The XGBoost C API wrapper: training a binary model on a tiny separable problem, prediction,
// save / load round trip, slicing by early stopping, and errors that name what failed.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "setdet/data/random.h"
#include "setdet/vrd/xgboost_model.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

// n rows of 3 features in [0, 1); label = x0 + 0.5 x1 > 0.75 (x2 is noise).
struct Problem {
  std::vector<float> x, y;
  int64_t rows = 0;
};

Problem separable(int64_t n, uint64_t seed) {
  Problem p;
  p.rows = n;
  Rng rng({seed});
  for (int64_t i = 0; i < n; ++i) {
    const float a = static_cast<float>(rng.uniform()), b = static_cast<float>(rng.uniform());
    p.x.insert(p.x.end(), {a, b, static_cast<float>(rng.uniform())});
    p.y.push_back(a + 0.5f * b > 0.75f ? 1.0f : 0.0f);
  }
  return p;
}

XgbMatrix matrix(const Problem& p, const std::string& what) {
  XgbMatrix m(p.x, 3, what);
  m.set_labels(p.y);
  return m;
}

GbmOptions small_options(const std::string& booster) {
  GbmOptions o;
  o.params = {{"booster", booster}, {"max_depth", "3"}, {"eta", "0.5"}, {"lambda", "1"}};
  o.num_rounds = 30;
  o.early_stopping_rounds = 10;
  o.threads = 1;
  return o;
}

double accuracy(const std::vector<float>& p, const std::vector<float>& y) {
  int64_t right = 0;
  for (size_t i = 0; i < p.size(); ++i) right += (p[i] > 0.5f) == (y[i] > 0.5f);
  return static_cast<double>(right) / static_cast<double>(p.size());
}

TEST(VrdXgboost, LearnsASeparableProblemWithEitherBooster) {
  const Problem train = separable(600, 1), val = separable(200, 2), test = separable(300, 3);
  for (const std::string booster : {"gbtree", "dart"}) {
    const XgbMatrix mtrain = matrix(train, "train"), mval = matrix(val, "val");
    int checks = 0;
    const GbmTrainResult r =
        train_binary_gbm(small_options(booster), mtrain, mval, [&](const GbmProgress& p) {
          ++checks;
          EXPECT_EQ(p.round, checks);
          EXPECT_LE(p.best_metric, p.val_metric);
        });
    EXPECT_GE(r.best_rounds, 1);
    EXPECT_LE(r.best_rounds, r.rounds_run);
    EXPECT_EQ(r.booster.boosted_rounds(), r.best_rounds);
    EXPECT_EQ(r.booster.attr("best_rounds"), std::to_string(r.best_rounds));
    EXPECT_EQ(r.booster.num_features(), 3);
    const std::vector<float> p = r.booster.predict(XgbMatrix(test.x, 3, "test"));
    ASSERT_EQ(p.size(), test.y.size());
    for (float v : p) EXPECT_TRUE(v >= 0.0f && v <= 1.0f);
    EXPECT_GT(accuracy(p, test.y), 0.93) << booster;
  }
}

TEST(VrdXgboost, SaveLoadRoundTripPredictsIdentically) {
  const Problem train = separable(400, 4), val = separable(100, 5), test = separable(100, 6);
  const XgbMatrix mtrain = matrix(train, "train"), mval = matrix(val, "val");
  const GbmTrainResult r = train_binary_gbm(small_options("dart"), mtrain, mval);
  test_util::TempDir dir("vrd_xgboost");
  const std::string path = (dir.path / "model.json").string();
  r.booster.save(path);
  const XgbBooster loaded = XgbBooster::load(path);
  const XgbMatrix mtest(test.x, 3, "test");
  EXPECT_EQ(loaded.predict(mtest), r.booster.predict(mtest));
  EXPECT_EQ(loaded.boosted_rounds(), r.best_rounds);
  EXPECT_EQ(loaded.attr("best_rounds"), std::to_string(r.best_rounds));
  EXPECT_EQ(loaded.attr("no_such_attribute"), "");
  EXPECT_EQ(XgbBooster::from_json(loaded.to_json(), "copy").predict(mtest), loaded.predict(mtest));
}

TEST(VrdXgboost, EarlyStoppingKeepsTheBestRounds) {
  // Labels unrelated to the features: the validation loss stops improving almost at once, and
  // the model keeps only the rounds up to the best check.
  Problem train = separable(300, 7), val = separable(300, 8);
  Rng rng({9});
  for (auto* p : {&train, &val}) {
    for (auto& y : p->y) y = rng.bernoulli(0.5) ? 1.0f : 0.0f;
  }
  GbmOptions o = small_options("gbtree");
  o.params["max_depth"] = "6";
  o.params["eta"] = "1";
  o.num_rounds = 200;
  o.early_stopping_rounds = 5;
  const XgbMatrix mtrain = matrix(train, "train"), mval = matrix(val, "val");
  const GbmTrainResult r = train_binary_gbm(o, mtrain, mval);
  EXPECT_LT(r.rounds_run, 200);
  EXPECT_EQ(r.rounds_run - r.best_rounds, 5);
  EXPECT_EQ(r.booster.boosted_rounds(), r.best_rounds);
  // the sliced model equals the full model's prediction limited to the same rounds
  XgbBooster full({&mtrain});
  full.set_param("objective", "binary:logistic");
  full.set_param("nthread", "1");
  std::ostringstream base_score;  // train_binary_gbm starts from the training positive rate
  base_score << std::setprecision(17)
             << static_cast<double>(mtrain.positives()) / static_cast<double>(mtrain.rows());
  full.set_param("base_score", base_score.str());
  for (const auto& [k, v] : o.params) full.set_param(k, v);
  for (int i = 0; i < r.rounds_run; ++i) full.update(i, mtrain);
  const XgbMatrix mtest(val.x, 3, "test");
  EXPECT_EQ(full.predict(mtest, r.best_rounds), r.booster.predict(mtest));
}

TEST(VrdXgboost, ErrorsNameWhatFailed) {
  const Problem train = separable(50, 10);
  XgbMatrix m(train.x, 3, "spatial features of 'on'");
  EXPECT_NE(
      error_of([&] { m.set_labels({1.0f}); }).find("spatial features of 'on': 1 labels for 50"),
      std::string::npos);
  std::vector<float> bad_labels(50, 0.0f);
  bad_labels[3] = 2.0f;
  EXPECT_NE(error_of([&] { m.set_labels(bad_labels); }).find("label of row 3 must be 0 or 1"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              XgbMatrix({1.0f, 2.0f, 3.0f}, 2, "odd");
            }).find("odd: 3 values are not a whole number of rows of 2"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              XgbMatrix({1.0f, INFINITY}, 2, "inf");
            }).find("inf: feature 1 of row 0"),
            std::string::npos);

  // an XGBoost failure carries the operation and XGBoost's message
  XgbBooster b({&m});
  const std::string e = error_of([&] {
    b.set_param("max_depth", "deep");
    m.set_labels(train.y);
    b.update(0, m);
  });
  EXPECT_NE(e.find("XGBoost: boosting round 0 on spatial features of 'on' failed: "),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("max_depth"), std::string::npos) << e;

  // one label only
  const std::vector<float> zeros(50, 0.0f);
  m.set_labels(zeros);
  XgbMatrix val(train.x, 3, "val");
  val.set_labels(train.y);
  EXPECT_NE(error_of([&] { train_binary_gbm(small_options("gbtree"), m, val); })
                .find("spatial features of 'on': a binary model needs both labels, got 0 "
                      "positives among 50 rows"),
            std::string::npos);

  // prediction with the wrong number of features
  m.set_labels(train.y);
  const GbmTrainResult r = train_binary_gbm(small_options("gbtree"), m, val);
  EXPECT_NE(error_of([&] {
              r.booster.predict(XgbMatrix({1.0f, 2.0f}, 2, "two columns"));
            }).find("two columns: the model was trained on 3 features, got 2"),
            std::string::npos);

  // loading
  test_util::TempDir dir("vrd_xgboost_errors");
  EXPECT_NE(error_of([&] {
              XgbBooster::load((dir.path / "absent.json").string());
            }).find("absent.json: cannot be opened"),
            std::string::npos);
  std::ofstream((dir.path / "bad.json").string()) << "{\"not\": \"a model\"";
  EXPECT_NE(error_of([&] {
              XgbBooster::load((dir.path / "bad.json").string());
            }).find("XGBoost: loading the model " + (dir.path / "bad.json").string() + " failed"),
            std::string::npos);

  // config
  EXPECT_NE(error_of([] {
              GbmOptions::from_config(Config::parse("{objective: 'reg:squarederror'}"));
            }).find("objective: the objective is binary:logistic"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              GbmOptions::from_config(Config::parse("{num_rounds: 0}"));
            }).find("num_rounds: expected >= 1, got 0"),
            std::string::npos);
  const GbmOptions o = GbmOptions::from_config(Config::parse(
      "{booster: dart, max_depth: 10, subsample: 0.2, num_rounds: 7, eval_interval: 2}"));
  EXPECT_EQ(o.params.at("booster"), "dart");
  EXPECT_EQ(o.params.at("subsample"), "0.2");
  EXPECT_EQ(o.num_rounds, 7);
  EXPECT_EQ(o.eval_interval, 2);
  EXPECT_EQ(o.params.count("num_rounds"), 0u);
}

}  // namespace
}  // namespace setdet
