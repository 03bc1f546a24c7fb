// ProfilerHook: where a training iteration's time goes, operator by operator. From iteration
// `start_iter` + 1 it records `num_iters` iterations with LibTorch's CPU profiler (every ATen
// operator, autograd node and RECORD_USER_SCOPE of the forward, backward and optimizer step), then
// logs the `top` entries by self time (time not spent in a nested recorded call) per iteration and
// writes all of them to work_dir/profile.json: {"iterations": n, "wall_ms_per_iter": w, "ops":
// [{"name", "calls", "self_ms", "total_ms"} per iteration, by self time]}. Config: hooks:
// [{type: ProfilerHook, start_iter: 20, num_iters: 5, top: 25}]. Profiling slows the recorded
// iterations (every operator call is timed), so their logged speed is not the run's.
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <vector>

#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/distributed/process_group.h"
#include "setdet/engine/hooks.h"
#include "setdet/engine/runner.h"

namespace setdet {
namespace {

namespace prof = torch::autograd::profiler;

struct OpTime {
  int64_t calls = 0;
  double self_us = 0;
  double total_us = 0;
};

// Per-name call counts and inclusive / self times from the push / pop events of every thread.
std::map<std::string, OpTime> aggregate(const prof::thread_event_lists& lists) {
  std::map<std::string, OpTime> ops;
  for (const auto& events : lists) {
    struct Open {
      const prof::LegacyEvent* push;
      double child_us;
    };
    std::vector<Open> stack;
    for (const auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        stack.push_back({&e, 0.0});
      } else if (e.kind() == prof::EventKind::PopRange) {
        // Ranges nest within a thread; a pop without its push (recording began inside it) is
        // skipped, and one that closes an outer range closes the inner ones left open first.
        auto it = std::find_if(stack.rbegin(), stack.rend(),
                               [&](const Open& o) { return o.push->handle() == e.handle(); });
        if (it == stack.rend()) continue;
        stack.erase(it.base(), stack.end());
        const Open open = stack.back();
        stack.pop_back();
        const double total = open.push->cpuElapsedUs(e);
        OpTime& t = ops[open.push->name()];
        t.calls += 1;
        t.total_us += total;
        t.self_us += std::max(0.0, total - open.child_us);
        if (!stack.empty()) stack.back().child_us += total;
      }
    }
  }
  return ops;
}

class ProfilerHook : public Hook {
 public:
  ProfilerHook(int64_t start_iter, int64_t num_iters, int64_t top)
      : Hook(priority::kVeryLow), start_(start_iter), num_(num_iters), top_(top) {}

  std::string name() const override { return "ProfilerHook"; }

  void before_train_iter(Runner& runner) override {
    if (active_ || done_ || runner.iter() != start_) return;
    prof::enableProfilerLegacy(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
    active_ = true;
    wall_start_ = std::chrono::steady_clock::now();
  }

  void after_train_iter(Runner& runner) override {
    if (active_ && runner.iter() >= start_ + num_) finish(runner);
  }

  void after_run(Runner& runner) override {
    if (active_) finish(runner);  // training ended inside the recorded window
  }

 private:
  void finish(Runner& runner) {
    const auto lists = prof::disableProfilerLegacy();
    active_ = false;
    done_ = true;
    const int64_t iters = std::max<int64_t>(1, runner.iter() - start_);
    const double wall_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start_)
            .count() /
        static_cast<double>(iters);
    std::vector<std::pair<std::string, OpTime>> ops;
    for (auto& kv : aggregate(lists)) ops.emplace_back(kv.first, kv.second);
    std::sort(ops.begin(), ops.end(),
              [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
    const double per = 1e-3 / static_cast<double>(iters);  // us in total -> ms per iteration

    runner.log(fmt::format("profile of iterations {}-{} ({:.1f} ms per iteration with the "
                           "profiler on); by self time, ms per iteration:",
                           start_ + 1, start_ + iters, wall_ms));
    runner.log(fmt::format("  {:>9} {:>6} {:>9} {:>7}  {}", "self", "%", "total", "calls", "op"));
    for (size_t i = 0; i < ops.size() && static_cast<int64_t>(i) < top_; ++i) {
      const OpTime& t = ops[i].second;
      runner.log(fmt::format("  {:9.2f} {:6.1f} {:9.2f} {:7}  {}", t.self_us * per,
                             100.0 * t.self_us * per / wall_ms, t.total_us * per,
                             t.calls / iters, ops[i].first));
    }
    std::string json = fmt::format("{{\"iterations\": {}, \"wall_ms_per_iter\": {:.3f}, \"ops\": [",
                                   iters, wall_ms);
    for (size_t i = 0; i < ops.size(); ++i) {
      const OpTime& t = ops[i].second;
      json += fmt::format("{}{{\"name\": {}, \"calls\": {}, \"self_ms\": {:.4f}, \"total_ms\": "
                          "{:.4f}}}",
                          i ? ", " : "", json_string(ops[i].first),
                          static_cast<double>(t.calls) / static_cast<double>(iters),
                          t.self_us * per, t.total_us * per);
    }
    json += "]}\n";
    if (!runner.options().work_dir.empty() && dist::is_main_process()) {
      write_file_atomic(runner.work_path("profile.json"), json);
    }
  }

  int64_t start_, num_, top_;
  bool active_ = false;
  bool done_ = false;
  std::chrono::steady_clock::time_point wall_start_;
};

}  // namespace

SETDET_REGISTER(HookRegistry, "ProfilerHook", [](const Config& cfg) {
  cfg.check_keys({"priority", "start_iter", "num_iters", "top"});
  const auto start = cfg.get<int64_t>("start_iter", 20);
  const auto num = cfg.get<int64_t>("num_iters", 5);
  const auto top = cfg.get<int64_t>("top", 25);
  SETDET_CHECK(start >= 0, cfg.where(), ".start_iter: expected >= 0, got ", start);
  SETDET_CHECK(num >= 1, cfg.where(), ".num_iters: expected >= 1, got ", num);
  SETDET_CHECK(top >= 1, cfg.where(), ".top: expected >= 1, got ", top);
  std::shared_ptr<Hook> hook = std::make_shared<ProfilerHook>(start, num, top);
  if (cfg.has("priority")) hook->set_priority(parse_priority(cfg));
  return hook;
});

}  // namespace setdet
