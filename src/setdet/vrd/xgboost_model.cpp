#include "setdet/vrd/xgboost_model.h"

#include <xgboost/c_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

// Throws naming the operation and XGBoost's message when a C API call fails.
void check(int rc, const std::string& operation) {
  if (rc != 0) throw Error("XGBoost: " + operation + " failed: " + XGBGetLastError());
}

bool higher_is_better(const std::string& metric) {
  return metric == "auc" || metric == "aucpr" || metric.rfind("map", 0) == 0 ||
         metric.rfind("ndcg", 0) == 0;
}

std::string format_number(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

}  // namespace

// ---- XgbMatrix ----

XgbMatrix::XgbMatrix(const float* data, int64_t rows, int64_t cols, std::string what)
    : rows_(rows), cols_(cols), what_(std::move(what)) {
  SETDET_CHECK(rows >= 0 && cols > 0, what_,
               ": a feature matrix needs rows >= 0 and cols > 0, got [", rows, ", ", cols, "]");
  for (int64_t i = 0; i < rows * cols; ++i) {
    SETDET_CHECK(!std::isinf(data[i]), what_, ": feature ", i % cols, " of row ", i / cols,
                 " is infinite (NaN marks a missing value)");
  }
  check(XGDMatrixCreateFromMat(data, static_cast<bst_ulong>(rows), static_cast<bst_ulong>(cols),
                               std::nanf(""), &handle_),
        "creating the matrix " + what_);
}

XgbMatrix::XgbMatrix(const std::vector<float>& data, int64_t cols, std::string what)
    : XgbMatrix(data.data(), cols > 0 ? static_cast<int64_t>(data.size()) / cols : 0, cols,
                std::move(what)) {
  SETDET_CHECK(static_cast<int64_t>(data.size()) == rows_ * cols_, what_, ": ", data.size(),
               " values are not a whole number of rows of ", cols_);
}

XgbMatrix::~XgbMatrix() {
  if (handle_) XGDMatrixFree(handle_);
}

XgbMatrix::XgbMatrix(XgbMatrix&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      rows_(other.rows_),
      cols_(other.cols_),
      has_labels_(other.has_labels_),
      positives_(other.positives_),
      what_(std::move(other.what_)) {}

XgbMatrix& XgbMatrix::operator=(XgbMatrix&& other) noexcept {
  if (this != &other) {
    if (handle_) XGDMatrixFree(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    rows_ = other.rows_;
    cols_ = other.cols_;
    has_labels_ = other.has_labels_;
    positives_ = other.positives_;
    what_ = std::move(other.what_);
  }
  return *this;
}

void XgbMatrix::set_labels(const std::vector<float>& labels) {
  SETDET_CHECK(static_cast<int64_t>(labels.size()) == rows_, what_, ": ", labels.size(),
               " labels for ", rows_, " rows");
  int64_t positives = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    SETDET_CHECK(labels[i] == 0.0f || labels[i] == 1.0f, what_, ": label of row ", i,
                 " must be 0 or 1, got ", labels[i]);
    positives += labels[i] == 1.0f;
  }
  check(
      XGDMatrixSetFloatInfo(handle_, "label", labels.data(), static_cast<bst_ulong>(labels.size())),
      "setting the labels of " + what_);
  has_labels_ = true;
  positives_ = positives;
}

// ---- XgbBooster ----

XgbBooster::XgbBooster(const std::vector<const XgbMatrix*>& cache) {
  std::vector<DMatrixHandle> handles;
  for (const auto* m : cache) handles.push_back(m->handle());
  check(XGBoosterCreate(handles.data(), static_cast<bst_ulong>(handles.size()), &handle_),
        "creating a booster");
}

XgbBooster::~XgbBooster() {
  if (handle_) XGBoosterFree(handle_);
}

XgbBooster::XgbBooster(XgbBooster&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)) {}

XgbBooster& XgbBooster::operator=(XgbBooster&& other) noexcept {
  if (this != &other) {
    if (handle_) XGBoosterFree(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

XgbBooster XgbBooster::from_json(std::string_view json, const std::string& origin) {
  XgbBooster b;
  check(XGBoosterLoadModelFromBuffer(b.handle_, json.data(), static_cast<bst_ulong>(json.size())),
        "loading the model " + origin);
  return b;
}

XgbBooster XgbBooster::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SETDET_CHECK(in.good(), "XGBoost model ", path, ": cannot be opened");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SETDET_CHECK(!bytes.empty(), "XGBoost model ", path, ": the file is empty");
  return from_json(bytes, path);
}

void XgbBooster::set_param(const std::string& name, const std::string& value) {
  check(XGBoosterSetParam(handle_, name.c_str(), value.c_str()),
        "setting parameter " + name + "=" + value);
}

void XgbBooster::update(int iteration, const XgbMatrix& train) {
  check(XGBoosterUpdateOneIter(handle_, iteration, train.handle()),
        "boosting round " + std::to_string(iteration) + " on " + train.what());
}

std::string XgbBooster::eval(int iteration, const std::vector<const XgbMatrix*>& sets,
                             const std::vector<std::string>& names) {
  SETDET_CHECK(sets.size() == names.size(), "XgbBooster::eval: ", sets.size(), " matrices but ",
               names.size(), " names");
  std::vector<DMatrixHandle> handles;
  std::vector<const char*> cnames;
  for (size_t i = 0; i < sets.size(); ++i) {
    handles.push_back(sets[i]->handle());
    cnames.push_back(names[i].c_str());
  }
  const char* out = nullptr;
  check(XGBoosterEvalOneIter(handle_, iteration, handles.data(), cnames.data(),
                             static_cast<bst_ulong>(handles.size()), &out),
        "evaluating round " + std::to_string(iteration));
  return out;
}

std::vector<float> XgbBooster::predict(const XgbMatrix& x, int iteration_end) const {
  const int64_t features = num_features();
  SETDET_CHECK(features == 0 || x.cols() == features, x.what(), ": the model was trained on ",
               features, " features, got ", x.cols());
  const std::string config =
      "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
      "\"iteration_end\": " +
      std::to_string(iteration_end) + ", \"strict_shape\": false}";
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* result = nullptr;
  check(XGBoosterPredictFromDMatrix(handle_, x.handle(), config.c_str(), &shape, &dim, &result),
        "predicting " + x.what());
  bst_ulong n = 1;
  for (bst_ulong d = 0; d < dim; ++d) n *= shape[d];
  SETDET_CHECK(static_cast<int64_t>(n) == x.rows(), x.what(), ": XGBoost returned ", n,
               " predictions for ", x.rows(), " rows (not a binary model?)");
  return std::vector<float>(result, result + n);
}

int XgbBooster::boosted_rounds() const {
  int out = 0;
  check(XGBoosterBoostedRounds(handle_, &out), "counting the boosted rounds");
  return out;
}

XgbBooster XgbBooster::slice(int begin, int end) const {
  XgbBooster out{Unallocated{}};
  const int rc = XGBoosterSlice(handle_, begin, end, 1, &out.handle_);
  SETDET_CHECK(rc != -2, "XGBoost: slicing rounds [", begin, ", ", end, ") of a model with ",
               boosted_rounds(), " rounds: out of range");
  check(rc, "slicing rounds [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
  return out;
}

int64_t XgbBooster::num_features() const {
  bst_ulong out = 0;
  check(XGBoosterGetNumFeature(handle_, &out), "reading the number of features");
  return static_cast<int64_t>(out);
}

void XgbBooster::set_attr(const std::string& key, const std::string& value) {
  check(XGBoosterSetAttr(handle_, key.c_str(), value.c_str()), "setting attribute " + key);
}

std::string XgbBooster::attr(const std::string& key) const {
  const char* out = nullptr;
  int success = 0;
  check(XGBoosterGetAttr(handle_, key.c_str(), &out, &success), "reading attribute " + key);
  return success && out ? std::string(out) : std::string();
}

std::string XgbBooster::to_json() const {
  bst_ulong len = 0;
  const char* data = nullptr;
  check(XGBoosterSaveModelToBuffer(handle_, "{\"format\": \"json\"}", &len, &data),
        "serialising the model");
  return std::string(data, len);
}

void XgbBooster::save(const std::string& path) const { write_file_atomic(path, to_json()); }

// ---- training ----

GbmOptions GbmOptions::from_config(const Config& cfg) {
  SETDET_CHECK(cfg.is_map(), cfg.where(), ": expected a map of XGBoost parameters");
  GbmOptions o;
  for (const auto& key : cfg.keys()) {
    if (key == "num_rounds") {
      o.num_rounds = cfg.get<int>(key);
    } else if (key == "early_stopping_rounds") {
      o.early_stopping_rounds = cfg.get<int>(key);
    } else if (key == "eval_interval") {
      o.eval_interval = cfg.get<int>(key);
    } else if (key == "eval_metric") {
      o.eval_metric = cfg.get<std::string>(key);
    } else if (key == "objective") {
      SETDET_CHECK(false, cfg[key].where(),
                   ": the objective is binary:logistic (one binary model per predicate)");
    } else {
      const Config v = cfg[key];
      SETDET_CHECK(!v.is_map() && !v.is_sequence(), v.where(),
                   ": an XGBoost parameter must be a scalar, got '", v.dump(), "'");
      o.params[key] = v.as<std::string>();
    }
  }
  SETDET_CHECK(o.num_rounds >= 1, cfg.where(), ".num_rounds: expected >= 1, got ", o.num_rounds);
  SETDET_CHECK(o.early_stopping_rounds >= 1, cfg.where(),
               ".early_stopping_rounds: expected >= 1, got ", o.early_stopping_rounds);
  SETDET_CHECK(o.eval_interval >= 1, cfg.where(), ".eval_interval: expected >= 1, got ",
               o.eval_interval);
  return o;
}

GbmTrainResult train_binary_gbm(const GbmOptions& options, const XgbMatrix& train,
                                const XgbMatrix& val,
                                const std::function<void(const GbmProgress&)>& progress) {
  SETDET_CHECK(train.cols() == val.cols(), train.what(), " has ", train.cols(), " features but ",
               val.what(), " has ", val.cols());
  for (const XgbMatrix* m : {&train, &val}) {
    SETDET_CHECK(m->has_labels(), m->what(), ": training and validation matrices need labels");
  }
  SETDET_CHECK(train.positives() > 0 && train.positives() < train.rows(), train.what(),
               ": a binary model needs both labels, got ", train.positives(), " positives among ",
               train.rows(), " rows");
  SETDET_CHECK(val.rows() > 0, val.what(), ": the validation matrix has no rows");
  XgbBooster booster({&train, &val});
  booster.set_param("objective", "binary:logistic");
  booster.set_param("eval_metric", options.eval_metric);
  booster.set_param("nthread",
                    std::to_string(options.threads > 0 ? options.threads : num_threads()));
  // start from the positive rate (XGBoost 2's default; 1.7 starts every model from 0.5)
  booster.set_param("base_score", format_number(static_cast<double>(train.positives()) /
                                                static_cast<double>(train.rows())));
  for (const auto& [k, v] : options.params) booster.set_param(k, v);

  const bool higher = higher_is_better(options.eval_metric);
  const std::string tag = "val-" + options.eval_metric + ":";
  GbmProgress p;
  p.num_rounds = options.num_rounds;
  p.best_metric = higher ? -INFINITY : INFINITY;
  int round = 0;
  while (round < options.num_rounds) {
    booster.update(round, train);
    ++round;
    if (round % options.eval_interval != 0 && round != options.num_rounds) continue;
    const std::string line = booster.eval(round - 1, {&val}, {"val"});
    const size_t at = line.find(tag);
    SETDET_CHECK(at != std::string::npos, "XGBoost: no '", tag, "' in the evaluation line '", line,
                 "'");
    const double m = std::strtod(line.c_str() + at + tag.size(), nullptr);
    p.round = round;
    p.val_metric = m;
    if (higher ? m > p.best_metric : m < p.best_metric) {
      p.best_metric = m;
      p.best_round = round;
    }
    if (progress) progress(p);
    if (round - p.best_round >= options.early_stopping_rounds) break;
  }
  GbmTrainResult r{round == p.best_round ? std::move(booster) : booster.slice(0, p.best_round),
                   p.best_round, round, p.best_metric};
  r.booster.set_attr("best_rounds", std::to_string(p.best_round));
  r.booster.set_attr("rounds_run", std::to_string(round));
  r.booster.set_attr("best_" + options.eval_metric, format_number(p.best_metric));
  return r;
}

}  // namespace setdet
