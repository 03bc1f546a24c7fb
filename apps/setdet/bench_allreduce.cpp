// `setdet bench-allreduce --config CONFIG --nproc N [--repeats R] [--warmup K] [--set ...]`
// (or one worker under torchrun's environment): the gradient all-reduce of one data-parallel
// training iteration of CONFIG's model, timed on its own. The trainable parameters are bucketed
// as training buckets them (distributed.bucket_size_mb, 1 MB first) and every bucket is
// all-reduced on the gradient process group as the gradient reducer does; rank 0 prints one JSON
// object: world size, parameters, bytes, bucket sizes, the timed seconds and their median.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/distributed/gradient_reducer.h"
#include "setdet/distributed/launcher.h"
#include "setdet/distributed/rendezvous.h"
#include "setdet/models/detector.h"

namespace setdet::cli {
namespace {

struct AllReduceOptions {
  std::string config;
  int nproc = 0;
  int repeats = 20;
  int warmup = 3;
  std::vector<std::string> overrides;
};

int run_bench_allreduce(const AllReduceOptions& o) {
  SETDET_CHECK(o.repeats > 0, "bench-allreduce: --repeats must be positive, got ", o.repeats);
  const auto launch = dist::launch_env_from_environment();
  if (o.nproc > 1 && !launch) {
    dist::LocalLaunch local;
    local.nproc = o.nproc;
    local.args = dist::own_arguments_without("--nproc");
    if (requested_threads() == 0) {
      local.args.push_back("--threads");
      local.args.push_back(
          std::to_string(std::max(1u, std::thread::hardware_concurrency() / o.nproc)));
    }
    return dist::launch_local_workers(local);
  }
  SETDET_CHECK(launch && launch->world_size > 1,
               "bench-allreduce: needs --nproc N (N > 1) or torchrun's environment");
  Config cfg = Config::load(o.config);
  for (const auto& s : o.overrides) cfg.set_override(s);
  const auto options = dist::DistOptions::from_config(cfg.find("distributed"));
  auto group = dist::init_process_group(*launch, options);
  auto model = DetectorRegistry().build(cfg["model"]);
  std::vector<at::Tensor> params;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  const auto buckets = dist::gradient_buckets(params, options.bucket_size_mb);
  const auto seconds = dist::time_gradient_all_reduce(*group, buckets, o.repeats, o.warmup);
  group->barrier();
  if (group->rank() != 0) return 0;
  const int64_t numel = std::accumulate(buckets.begin(), buckets.end(), int64_t{0});
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  const size_t m = sorted.size() / 2;
  const double median = sorted.size() % 2 ? sorted[m] : 0.5 * (sorted[m - 1] + sorted[m]);
  std::cout << fmt::format(
      "{{\"world_size\": {}, \"parameters\": {}, \"bytes\": {}, \"buckets\": [{}], "
      "\"bucket_size_mb\": {}, \"times_s\": [{:.6f}], \"median_s\": {:.6f}}}\n",
      group->world_size(), numel, numel * 4, fmt::join(buckets, ", "), options.bucket_size_mb,
      fmt::join(seconds, ", "), median);
  return 0;
}

const RegisterCommand kBenchAllReduce{
    "bench-allreduce", "time the gradient all-reduce of one data-parallel training iteration",
    [](CLI::App& app) {
      auto o = std::make_shared<AllReduceOptions>();
      app.add_option("--config", o->config, "config YAML (model; distributed)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--nproc", o->nproc, "local worker processes (required unless run by a launcher)")
          ->default_str("")  // 0: not given
          ->check(CLI::Range(2, 1024));
      app.add_option("--repeats", o->repeats, "timed all-reduces");
      app.add_option("--warmup", o->warmup, "untimed all-reduces first")
          ->check(CLI::NonNegativeNumber);
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      return [o] { return run_bench_allreduce(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
