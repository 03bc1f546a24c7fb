// XGBoost (Debian's libxgboost-dev, 1.7) through its C API: RAII owners of a DMatrix and a
// Booster whose failures throw setdet::Error naming the operation and XGBoost's own message, and
// the binary gradient-boosted model the VRD pipeline trains per predicate (Open Images 2019 VRD
// winner, Sec. 3.1: dart or gbtree boosters, early stopping on a validation split).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "setdet/config/config.h"

namespace setdet {

// A dense float32 matrix [rows, cols] (row-major, NaN = missing) with optional labels.
class XgbMatrix {
 public:
  // `what` names the matrix in errors ("spatial features of 'on', train").
  XgbMatrix(const float* data, int64_t rows, int64_t cols, std::string what);
  XgbMatrix(const std::vector<float>& data, int64_t cols, std::string what);
  ~XgbMatrix();
  XgbMatrix(XgbMatrix&& other) noexcept;
  XgbMatrix& operator=(XgbMatrix&& other) noexcept;
  XgbMatrix(const XgbMatrix&) = delete;
  XgbMatrix& operator=(const XgbMatrix&) = delete;

  // One label per row (binary: 0 or 1).
  void set_labels(const std::vector<float>& labels);
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  bool has_labels() const { return has_labels_; }
  int64_t positives() const { return positives_; }  // rows labelled 1
  const std::string& what() const { return what_; }
  void* handle() const { return handle_; }

 private:
  void* handle_ = nullptr;
  int64_t rows_ = 0, cols_ = 0;
  bool has_labels_ = false;
  int64_t positives_ = 0;
  std::string what_;
};

class XgbBooster {
 public:
  // A new, untrained booster; `cache` are the matrices it will train and evaluate on.
  explicit XgbBooster(const std::vector<const XgbMatrix*>& cache = {});
  ~XgbBooster();
  XgbBooster(XgbBooster&& other) noexcept;
  XgbBooster& operator=(XgbBooster&& other) noexcept;
  XgbBooster(const XgbBooster&) = delete;
  XgbBooster& operator=(const XgbBooster&) = delete;

  // A model saved by save() / to_json(); `origin` names it in errors.
  static XgbBooster from_json(std::string_view json, const std::string& origin);
  static XgbBooster load(const std::string& path);

  void set_param(const std::string& name, const std::string& value);
  // One boosting round on `train` (which must carry labels).
  void update(int iteration, const XgbMatrix& train);
  // XGBoost's evaluation line for round `iteration`: "[7]\tval-logloss:0.3124".
  std::string eval(int iteration, const std::vector<const XgbMatrix*>& sets,
                   const std::vector<std::string>& names);
  // Probabilities (for binary:logistic) of every row from the trees of rounds
  // [0, iteration_end) (0: all rounds).
  std::vector<float> predict(const XgbMatrix& x, int iteration_end = 0) const;
  int boosted_rounds() const;
  // The trees of rounds [begin, end) as a booster of their own.
  XgbBooster slice(int begin, int end) const;
  int64_t num_features() const;
  void set_attr(const std::string& key, const std::string& value);
  // "" when the attribute is absent.
  std::string attr(const std::string& key) const;

  std::string to_json() const;
  // Writes to_json() atomically.
  void save(const std::string& path) const;

 private:
  struct Unallocated {};
  explicit XgbBooster(Unallocated) {}
  void* handle_ = nullptr;
};

// Parameters of a binary model: `params` are passed to XGBoost as they are (booster, max_depth,
// eta, subsample, colsample_bytree, gamma, lambda, rate_drop, ...; objective binary:logistic and
// eval_metric are set by train_binary_gbm, base_score defaults to the training positive rate).
struct GbmOptions {
  std::map<std::string, std::string> params;
  int num_rounds = 5000;
  // Stop when the validation metric has not improved for this many rounds (checked every
  // eval_interval rounds); the model keeps the rounds up to the best check.
  int early_stopping_rounds = 50;
  int eval_interval = 1;
  std::string eval_metric = "logloss";  // lower is better, except auc / aucpr / map / ndcg
  int threads = 0;                      // 0: setdet's thread count

  // Config node: {booster: dart, max_depth: 10, subsample: 0.2, ..., num_rounds,
  // early_stopping_rounds, eval_interval, eval_metric}; every key other than those four is an
  // XGBoost parameter.
  static GbmOptions from_config(const Config& cfg);
};

struct GbmProgress {
  int round = 0;             // rounds trained
  int num_rounds = 0;        // the limit
  double val_metric = 0.0;   // at this check
  double best_metric = 0.0;  // best so far
  int best_round = 0;        // rounds of the best model
};

struct GbmTrainResult {
  XgbBooster booster;   // sliced to the best validation check
  int best_rounds = 0;  // rounds kept
  int rounds_run = 0;   // rounds trained before stopping
  double best_metric = 0.0;
};

// Trains a binary:logistic model on `train`, checking `val` every eval_interval rounds; calls
// `progress` after each check. Both matrices need labels, with the same columns. `train` must
// hold both classes (a constant label gives nothing to learn: an error naming the matrix).
GbmTrainResult train_binary_gbm(const GbmOptions& options, const XgbMatrix& train,
                                const XgbMatrix& val,
                                const std::function<void(const GbmProgress&)>& progress = {});

}  // namespace setdet
