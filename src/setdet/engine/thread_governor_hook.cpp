// ThreadGovernorHook: training that degrades in proportion to the cores other processes take.
// Every `interval_seconds` it measures how many cores other processes kept busy
// (core/cpu_load.h) and runs LibTorch's and setdet's pools on the free ones, never more than the
// thread count training started with. Config: hooks: [{type: ThreadGovernorHook,
// interval_seconds: 5}]. Off by default: the thread count changes floating-point summation order,
// so runs that must repeat bit for bit leave it out.
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "setdet/core/cpu_load.h"
#include "setdet/core/parallel.h"
#include "setdet/engine/hooks.h"
#include "setdet/engine/runner.h"
#include "setdet/engine/threads.h"

namespace setdet {
namespace {

class ThreadGovernorHook : public Hook {
 public:
  explicit ThreadGovernorHook(double interval_seconds)
      : Hook(priority::kLow), interval_(interval_seconds) {}

  std::string name() const override { return "ThreadGovernorHook"; }

  void before_run(Runner& runner) override {
    max_threads_ = at::get_num_threads();
    enabled_ = max_threads_ > 1 && cpu_load_supported();
    last_ = sample_cpu();
  }

  void after_train_iter(Runner& runner) override {
    if (!enabled_) return;
    const CpuSample now = sample_cpu();
    if (now.wall - last_.wall < interval_) return;
    const int cores = available_cores();
    const double others = cores_used_by_others(last_, now, cores);
    last_ = now;
    const int current = at::get_num_threads();
    const int target = governed_thread_count(max_threads_, cores, others);
    if (target == current) return;
    init_threads(target);
    runner.log(fmt::format("threads {} -> {}: other processes kept {:.1f} of {} cores busy",
                           current, target, others, cores));
  }

  void after_run(Runner& runner) override {
    if (enabled_) init_threads(max_threads_);
  }

 private:
  double interval_;
  int max_threads_ = 1;
  bool enabled_ = false;
  CpuSample last_;
};

}  // namespace

SETDET_REGISTER(HookRegistry, "ThreadGovernorHook", [](const Config& cfg) {
  cfg.check_keys({"priority", "interval_seconds"});
  const double interval = cfg.get<double>("interval_seconds", 5.0);
  SETDET_CHECK(interval > 0, cfg.where(), ".interval_seconds: expected > 0, got ", interval);
  std::shared_ptr<Hook> hook = std::make_shared<ThreadGovernorHook>(interval);
  if (cfg.has("priority")) hook->set_priority(parse_priority(cfg));
  return hook;
});

}  // namespace setdet
