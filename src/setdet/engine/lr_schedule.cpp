#include "setdet/engine/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace setdet {

int64_t TrainProgress::total_iters() const {
  if (max_iters > 0) return max_iters;
  if (max_epochs > 0 && iters_per_epoch > 0) return max_epochs * iters_per_epoch;
  return 0;
}

void LrSchedule::set_warmup(Warmup kind, int64_t iters, double ratio) {
  warmup_ = kind;
  warmup_iters_ = iters;
  warmup_ratio_ = ratio;
}

double LrSchedule::factor(const TrainProgress& p) const {
  const double regular = regular_factor(p);
  if (warmup_ == Warmup::kNone || p.iter >= warmup_iters_) return regular;
  if (warmup_ == Warmup::kConstant) return regular * warmup_ratio_;
  const double k = (1.0 - static_cast<double>(p.iter) / static_cast<double>(warmup_iters_)) *
                   (1.0 - warmup_ratio_);
  return regular * (1.0 - k);
}

std::string ConstantLrSchedule::describe() const { return "Constant"; }

StepLrSchedule::StepLrSchedule(std::vector<int64_t> steps, double gamma, bool by_epoch)
    : steps_(std::move(steps)), gamma_(gamma), by_epoch_(by_epoch) {}

double StepLrSchedule::regular_factor(const TrainProgress& p) const {
  const int64_t at = by_epoch_ ? p.epoch : p.iter;
  int exponent = 0;
  for (int64_t s : steps_) exponent += at >= s ? 1 : 0;
  return std::pow(gamma_, exponent);
}

void StepLrSchedule::check_limits(const TrainProgress& limits) const {}

std::string StepLrSchedule::describe() const {
  std::ostringstream os;
  os << "Step(" << (by_epoch_ ? "epochs" : "iters") << " [";
  for (size_t i = 0; i < steps_.size(); ++i) os << (i ? ", " : "") << steps_[i];
  os << "], gamma " << gamma_ << ")";
  return os.str();
}

CosineLrSchedule::CosineLrSchedule(double min_lr_ratio, ProgressKey key)
    : min_lr_ratio_(min_lr_ratio), key_(key) {}

double CosineLrSchedule::progress(const TrainProgress& p) const {
  double t = 0.0;
  switch (key_) {
    case ProgressKey::kTime:
      t = p.max_seconds > 0 ? p.elapsed_seconds / p.max_seconds : 0.0;
      break;
    case ProgressKey::kEpoch:
      t = p.max_epochs > 0 ? static_cast<double>(p.epoch) / static_cast<double>(p.max_epochs) : 0.0;
      break;
    case ProgressKey::kIter: {
      const int64_t total = p.total_iters();
      t = total > 0 ? static_cast<double>(p.iter) / static_cast<double>(total) : 0.0;
      break;
    }
  }
  return std::clamp(t, 0.0, 1.0);
}

double CosineLrSchedule::regular_factor(const TrainProgress& p) const {
  const double t = progress(p);
  return min_lr_ratio_ + (1.0 - min_lr_ratio_) * 0.5 * (1.0 + std::cos(M_PI * t));
}

void CosineLrSchedule::check_limits(const TrainProgress& limits) const {
  switch (key_) {
    case ProgressKey::kTime:
      SETDET_CHECK(limits.max_seconds > 0, where_,
                   ": a Cosine schedule with by_time: true needs runner.max_seconds > 0");
      break;
    case ProgressKey::kEpoch:
      SETDET_CHECK(limits.max_epochs > 0, where_,
                   ": a Cosine schedule with by_epoch: true needs runner.max_epochs > 0");
      break;
    case ProgressKey::kIter:
      SETDET_CHECK(limits.total_iters() > 0, where_,
                   ": a Cosine schedule by iterations needs runner.max_iters or "
                   "runner.max_epochs (or set by_time: true with runner.max_seconds)");
      break;
  }
}

std::string CosineLrSchedule::describe() const {
  const char* key = key_ == ProgressKey::kTime    ? "time"
                    : key_ == ProgressKey::kEpoch ? "epochs"
                                                  : "iters";
  std::ostringstream os;
  os << "Cosine(by " << key << ", min_lr_ratio " << min_lr_ratio_ << ")";
  return os.str();
}

namespace {

const std::vector<std::string> kWarmupKeys{"warmup", "warmup_iters", "warmup_ratio"};

std::vector<std::string> with_warmup_keys(std::vector<std::string> keys) {
  keys.insert(keys.end(), kWarmupKeys.begin(), kWarmupKeys.end());
  return keys;
}

std::shared_ptr<LrSchedule> with_warmup(std::shared_ptr<LrSchedule> schedule, const Config& cfg) {
  schedule->set_origin(cfg.where());
  const int64_t iters = cfg.get<int64_t>("warmup_iters", 0);
  const double ratio = cfg.get<double>("warmup_ratio", 0.1);
  std::string kind = cfg.get<std::string>("warmup", iters > 0 ? "linear" : "none");
  SETDET_CHECK(kind == "linear" || kind == "constant" || kind == "none", cfg.where(),
               ".warmup: expected one of linear, constant, none, got '", kind, "'");
  SETDET_CHECK(iters >= 0, cfg.where(), ".warmup_iters: expected >= 0, got ", iters);
  SETDET_CHECK(ratio > 0 && ratio <= 1, cfg.where(), ".warmup_ratio: expected in (0, 1], got ",
               ratio);
  if (kind != "none") {
    SETDET_CHECK(iters > 0, cfg.where(), ".warmup_iters: warm-up '", kind,
                 "' needs warmup_iters > 0");
  }
  const Warmup w = kind == "linear"     ? Warmup::kLinear
                   : kind == "constant" ? Warmup::kConstant
                                        : Warmup::kNone;
  schedule->set_warmup(w, iters, ratio);
  return schedule;
}

SETDET_REGISTER(LrScheduleRegistry, "Constant", [](const Config& cfg) {
  cfg.check_keys(with_warmup_keys({}));
  return with_warmup(std::make_shared<ConstantLrSchedule>(), cfg);
});

SETDET_REGISTER(LrScheduleRegistry, "Step", [](const Config& cfg) {
  cfg.check_keys(with_warmup_keys({"steps", "gamma", "by_epoch"}));
  auto steps = cfg.get<std::vector<int64_t>>("steps");
  SETDET_CHECK(std::is_sorted(steps.begin(), steps.end()), cfg.where(),
               ".steps: expected ascending values, got ", cfg["steps"].dump());
  const double gamma = cfg.get<double>("gamma", 0.1);
  SETDET_CHECK(gamma > 0, cfg.where(), ".gamma: expected > 0, got ", gamma);
  return with_warmup(
      std::make_shared<StepLrSchedule>(std::move(steps), gamma, cfg.get<bool>("by_epoch", true)),
      cfg);
});

SETDET_REGISTER(LrScheduleRegistry, "Cosine", [](const Config& cfg) {
  cfg.check_keys(with_warmup_keys({"min_lr_ratio", "by_epoch", "by_time"}));
  const double min_ratio = cfg.get<double>("min_lr_ratio", 0.0);
  SETDET_CHECK(min_ratio >= 0 && min_ratio <= 1, cfg.where(),
               ".min_lr_ratio: expected in [0, 1], got ", min_ratio);
  const bool by_epoch = cfg.get<bool>("by_epoch", false);
  const bool by_time = cfg.get<bool>("by_time", false);
  SETDET_CHECK(!(by_epoch && by_time), cfg.where(),
               ": by_epoch and by_time are exclusive (got both true)");
  const ProgressKey key = by_time    ? ProgressKey::kTime
                          : by_epoch ? ProgressKey::kEpoch
                                     : ProgressKey::kIter;
  return with_warmup(std::make_shared<CosineLrSchedule>(min_ratio, key), cfg);
});

}  // namespace

std::shared_ptr<LrSchedule> build_lr_schedule(const std::optional<Config>& cfg) {
  if (!cfg) return std::make_shared<ConstantLrSchedule>();
  return LrScheduleRegistry().build(*cfg);
}

}  // namespace setdet
