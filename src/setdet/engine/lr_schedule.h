// Learning-rate schedules in the MMCV LrUpdaterHook mould: a regular schedule (Constant, Step,
// Cosine) times an optional warm-up over the first iterations. A schedule is a pure function of
// the training progress, so its state is the runner's TrainState (saved in checkpoints).
//
//   lr_schedule: {type: Cosine, warmup: linear, warmup_iters: 100, warmup_ratio: 0.001,
//                 min_lr_ratio: 0.0, by_time: true}
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "setdet/config/registry.h"

namespace setdet {

// Where training stands when the learning rate of the next iteration is chosen.
struct TrainProgress {
  int64_t iter = 0;              // iterations completed before this one
  int64_t epoch = 0;             // current epoch, 0-based
  int64_t iters_per_epoch = 0;   // batches in one epoch
  int64_t max_iters = 0;         // 0: no iteration limit
  int64_t max_epochs = 0;        // 0: no epoch limit
  double elapsed_seconds = 0.0;  // training time so far (the runner excludes validation)
  double max_seconds = 0.0;      // 0: no time budget

  // The iteration count at which training ends: max_iters, else max_epochs * iters_per_epoch,
  // else 0 (unknown).
  int64_t total_iters() const;
};

enum class Warmup { kNone, kLinear, kConstant };

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;

  // Multiplier of every parameter group's base learning rate for the next iteration:
  // regular(p) * warm-up(p). MMCV's warm-up: linear gives
  // regular * (1 - (1 - iter / warmup_iters) * (1 - warmup_ratio)), constant gives
  // regular * warmup_ratio, both while iter < warmup_iters.
  double factor(const TrainProgress& p) const;

  // Throws naming the config key if the schedule cannot run with these limits (e.g. a
  // time-keyed schedule without runner.max_seconds).
  virtual void check_limits(const TrainProgress& limits) const {}

  virtual std::string describe() const = 0;

  void set_warmup(Warmup kind, int64_t iters, double ratio);
  void set_origin(std::string where) { where_ = std::move(where); }

 protected:
  virtual double regular_factor(const TrainProgress& p) const = 0;
  std::string where_ = "lr_schedule";

 private:
  Warmup warmup_ = Warmup::kNone;
  int64_t warmup_iters_ = 0;
  double warmup_ratio_ = 0.1;
};

// lr = base.
class ConstantLrSchedule : public LrSchedule {
 public:
  std::string describe() const override;

 protected:
  double regular_factor(const TrainProgress& p) const override { return 1.0; }
};

// MMCV StepLrUpdaterHook: lr = base * gamma^(number of steps <= progress), progress in epochs
// (by_epoch) or iterations.
class StepLrSchedule : public LrSchedule {
 public:
  StepLrSchedule(std::vector<int64_t> steps, double gamma, bool by_epoch);
  void check_limits(const TrainProgress& limits) const override;
  std::string describe() const override;

 protected:
  double regular_factor(const TrainProgress& p) const override;

 private:
  std::vector<int64_t> steps_;
  double gamma_;
  bool by_epoch_;
};

enum class ProgressKey { kIter, kEpoch, kTime };

// MMCV CosineAnnealingLrUpdaterHook: lr = base * (m + (1 - m) * (1 + cos(pi * t)) / 2) with
// m = min_lr_ratio and t = progress in [0, 1]: iter / total_iters, epoch / max_epochs, or
// elapsed_seconds / max_seconds (a schedule keyed to a wall-clock budget).
class CosineLrSchedule : public LrSchedule {
 public:
  CosineLrSchedule(double min_lr_ratio, ProgressKey key);
  void check_limits(const TrainProgress& limits) const override;
  std::string describe() const override;
  double progress(const TrainProgress& p) const;  // t in [0, 1]

 protected:
  double regular_factor(const TrainProgress& p) const override;

 private:
  double min_lr_ratio_;
  ProgressKey key_;
};

SETDET_DEFINE_REGISTRY(LrScheduleRegistry, std::shared_ptr<LrSchedule>, "lr schedule")

// Builds from the `lr_schedule` config node (Constant, Step, Cosine); a missing node gives a
// constant schedule without warm-up.
std::shared_ptr<LrSchedule> build_lr_schedule(const std::optional<Config>& cfg);

}  // namespace setdet
