// Hooks at the training pipeline's time points (MMDetection paper, Sec. 3.2; MMCV's Hook):
// before/after run, train epoch, train iteration, val epoch and val iteration. The runner calls
// every registered hook at each point in ascending priority (MMCV's values: 0 highest ... 100
// lowest; equal priorities keep registration order).
//
// Default hooks (MMCV's default priorities):
//   LrSchedulerHook  VERY_HIGH (10)     sets each group's lr before an iteration
//   OptimizerHook    ABOVE_NORMAL (40)  backward, gradient clipping, step; a non-finite loss
//                                       stops training or skips the batch (runner.nonfinite)
//   CheckpointHook   NORMAL (50)        latest.pt / epoch_N.pt
//   IterTimerHook    LOW (70)           data and iteration times
//   EvalHook         LOW (70)           COCO evaluation every `interval` epochs and at the end
//   LoggerHook       VERY_LOW (90)      progress bar / log lines, train.log, log.jsonl
// A `hooks:` list in the config adds hooks; an entry whose type names a default hook is merged
// over that default (e.g. {type: LoggerHook, interval: 10}).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "setdet/config/registry.h"

namespace setdet {

class Runner;

namespace priority {
constexpr int kHighest = 0;
constexpr int kVeryHigh = 10;
constexpr int kHigh = 30;
constexpr int kAboveNormal = 40;
constexpr int kNormal = 50;
constexpr int kBelowNormal = 60;
constexpr int kLow = 70;
constexpr int kVeryLow = 90;
constexpr int kLowest = 100;
}  // namespace priority

// "NORMAL" etc. or an integer in [0, 100]; throws naming the key path otherwise.
int parse_priority(const Config& cfg);

class Hook {
 public:
  explicit Hook(int priority) : priority_(priority) {}
  virtual ~Hook() = default;

  virtual std::string name() const = 0;
  int priority() const { return priority_; }
  void set_priority(int p) { priority_ = p; }

  virtual void before_run(Runner& runner) {}
  virtual void after_run(Runner& runner) {}
  virtual void before_train_epoch(Runner& runner) {}
  virtual void after_train_epoch(Runner& runner) {}
  virtual void before_train_iter(Runner& runner) {}
  virtual void after_train_iter(Runner& runner) {}
  virtual void before_val_epoch(Runner& runner) {}
  virtual void after_val_epoch(Runner& runner) {}
  virtual void before_val_iter(Runner& runner) {}
  virtual void after_val_iter(Runner& runner) {}

 private:
  int priority_;
};

// Builders receive the hook's config node ({type: ..., priority: ..., own keys}).
SETDET_DEFINE_REGISTRY(HookRegistry, std::shared_ptr<Hook>, "hook")

// The default hooks (EvalHook only when with_eval) configured from the root config's `runner`
// and `grad_clip` sections, merged with the root's `hooks:` list as described above.
std::vector<std::shared_ptr<Hook>> build_hooks(const Config& root, bool with_eval);

// Sets lr = base_lr * schedule factor on every parameter group before each iteration.
class LrSchedulerHook : public Hook {
 public:
  LrSchedulerHook() : Hook(priority::kVeryHigh) {}
  std::string name() const override { return "LrSchedulerHook"; }
  void before_run(Runner& runner) override;
  void before_train_iter(Runner& runner) override;
};

// zero_grad, backward of the summed loss, optional clip_grad_norm_(max_norm, norm_type), step;
// logs "grad_norm" (when clipping) and "backward_time" (backward + step, seconds).
class OptimizerHook : public Hook {
 public:
  explicit OptimizerHook(double max_norm = 0.0, double norm_type = 2.0)
      : Hook(priority::kAboveNormal), max_norm_(max_norm), norm_type_(norm_type) {}
  std::string name() const override { return "OptimizerHook"; }
  void after_train_iter(Runner& runner) override;

 private:
  double max_norm_;
  double norm_type_;
  int64_t skipped_ = 0;  // batches skipped for a non-finite loss (runner.nonfinite: skip)
  int64_t reported_iter_ = -1;  // last iteration whose exploding gradient was logged
};

// Saves work_dir/latest.pt every `interval` epochs (plus epoch_N.pt, N 1-based, keeping the
// newest `max_keep`; 0 keeps all), every `interval_iters` iterations (latest.pt only) and when
// training stops.
class CheckpointHook : public Hook {
 public:
  CheckpointHook(int64_t interval, int64_t interval_iters, int64_t max_keep)
      : Hook(priority::kNormal),
        interval_(interval),
        interval_iters_(interval_iters),
        max_keep_(max_keep) {}
  std::string name() const override { return "CheckpointHook"; }
  void after_train_iter(Runner& runner) override;
  void after_train_epoch(Runner& runner) override;
  void after_run(Runner& runner) override;

 private:
  int64_t interval_, interval_iters_, max_keep_;
  int64_t last_saved_iter_ = -1;
  std::vector<std::string> epoch_files_;
};

// Records "data_time" (waiting for the batch) and "time" (whole iteration) in the log buffer.
class IterTimerHook : public Hook {
 public:
  IterTimerHook() : Hook(priority::kLow) {}
  std::string name() const override { return "IterTimerHook"; }
  void before_train_epoch(Runner& runner) override;
  void before_train_iter(Runner& runner) override;
  void after_train_iter(Runner& runner) override;

 private:
  double last_ = 0.0;
};

// Evaluates on the validation data every `interval` epochs (0: only at the end), every
// `interval_iters` iterations (0: never; for curves over short iteration-keyed schedules) and once
// more when training stops, unless the final weights were just evaluated.
class EvalHook : public Hook {
 public:
  explicit EvalHook(int64_t interval, int64_t interval_iters = 0)
      : Hook(priority::kLow), interval_(interval), interval_iters_(interval_iters) {}
  std::string name() const override { return "EvalHook"; }
  void before_run(Runner& runner) override;
  void after_train_iter(Runner& runner) override;
  void after_train_epoch(Runner& runner) override;
  void after_run(Runner& runner) override;

 private:
  int64_t interval_;
  int64_t interval_iters_;
  int64_t evaluated_at_iter_ = -1;
};

// Every `interval` iterations: a log line (epoch, iteration, lr, averaged losses, it/s, img/s,
// ETA) to stderr, work_dir/train.log and a JSON object to work_dir/log.jsonl. On a terminal a
// progress bar is redrawn in place at most every `refresh_seconds`.
class LoggerHook : public Hook {
 public:
  LoggerHook(int64_t interval, double refresh_seconds, bool progress_bar)
      : Hook(priority::kVeryLow),
        interval_(interval),
        refresh_seconds_(refresh_seconds),
        progress_bar_(progress_bar) {}
  std::string name() const override { return "LoggerHook"; }
  void before_run(Runner& runner) override;
  void after_train_iter(Runner& runner) override;
  void after_train_epoch(Runner& runner) override;
  void after_val_epoch(Runner& runner) override;
  void after_run(Runner& runner) override;

 private:
  void clear_bar();
  int64_t interval_;
  double refresh_seconds_;
  bool progress_bar_;
  bool tty_ = false;
  bool bar_shown_ = false;
  double last_bar_ = -1e9;
  double interval_start_ = 0.0;
  int64_t interval_start_iter_ = 0;
  int64_t interval_start_images_ = 0;
};

}  // namespace setdet
