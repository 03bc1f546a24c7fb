// `setdet train CONFIG [--work-dir DIR] [--resume | --resume-from CKPT | --load-from CKPT]
// [--set key=value ...] [--nproc N]`: trains the configured detector with the hook-driven runner.
// The work directory receives the resolved config (config.yaml), train.log, log.jsonl, checkpoints
// (latest.pt, epoch_N.pt) and metrics.json. Ctrl-C stops after the current iteration and saves
// latest.pt (a second Ctrl-C kills the process).
//
// Data-parallel: `--nproc N` starts N local workers (distributed/launcher.h); under torchrun's
// environment (WORLD_SIZE > 1) this process is one rank (distributed/rendezvous.h): it trains on
// its share of every global batch, only rank 0 writes the work directory, and any failure ends
// the rank with a report naming the rank at fault.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/distributed/gradient_reducer.h"
#include "setdet/distributed/launcher.h"
#include "setdet/distributed/rendezvous.h"
#include "setdet/engine/data_parallel_hook.h"
#include "setdet/engine/hooks.h"
#include "setdet/engine/loader_source.h"
#include "setdet/engine/lr_schedule.h"
#include "setdet/engine/optim.h"
#include "setdet/engine/runner.h"
#include "setdet/engine/threads.h"
#include "setdet/io/state_dict.h"
#include "setdet/models/detector.h"

namespace setdet::cli {
namespace {

namespace fs = std::filesystem;

struct TrainOptions {
  std::string config;
  std::string work_dir;
  bool resume = false;
  std::string resume_from;
  std::string load_from;
  std::vector<std::string> overrides;
  int nproc = 0;
  int master_port = 0;
};

std::atomic<Runner*> g_runner{nullptr};

extern "C" void on_interrupt(int) {
  if (Runner* r = g_runner.load()) r->request_stop();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

std::string resolved_yaml(const Config& cfg) {
  YAML::Emitter out;
  out << cfg.node();
  return std::string(out.c_str()) + "\n";
}

// The val loader never shuffles (set unless the config says otherwise).
Config unshuffled(const Config& loader_cfg) {
  YAML::Node node = YAML::Clone(loader_cfg.node());
  if (node.IsMap() && !node["shuffle"]) node["shuffle"] = false;
  return Config(node, loader_cfg.file(), loader_cfg.path());
}

// Every rank resumes from rank 0's file (other machines need not share the work directory).
std::string checkpoint_for_this_rank(const std::string& path, dist::ProcessGroup& group) {
  std::string bytes;
  if (group.rank() == 0) {
    std::ifstream in(path, std::ios::binary);
    SETDET_CHECK(in, "cannot read the checkpoint ", path);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  bytes = group.broadcast_bytes(bytes);
  if (group.rank() == 0) return path;
  const fs::path local =
      fs::temp_directory_path() / fmt::format("setdet_resume_{}_rank{}.pt", getpid(), group.rank());
  write_file_atomic(local.string(), bytes);
  return local.string();
}

int train_process(const TrainOptions& o, const Config& cfg, const dist::DistOptions& dist_options) {
  auto options = RunnerOptions::from_config(cfg["runner"]);
  options.work_dir = o.work_dir.empty()
                         ? (fs::path("work_dirs") / fs::path(o.config).stem()).string()
                         : o.work_dir;
  const Config data_cfg = cfg["data"];
  data_cfg.check_keys({"train", "val", "test"});
  dist::ProcessGroup* group = dist::current_process_group();
  const DataShard shard{dist::rank(), dist::world_size()};

  // Seed before anything draws random numbers (weight initialisation included).
  torch::manual_seed(options.seed);
  auto model = DetectorRegistry().build(cfg["model"]);
  if (!o.load_from.empty()) {
    const ImportReport r = load_initial_weights(o.load_from, *model, cfg);
    std::cerr << "initial weights: " << r.loaded << " tensors from " << o.load_from;
    if (!r.ignored_missing.empty())
      std::cerr << " (" << r.ignored_missing.size() << " kept as built)";
    std::cerr << "\n";
  }
  auto optimizer = build_optimizer(cfg["optimizer"], *model);
  auto schedule = build_lr_schedule(cfg.find("lr_schedule"));

  std::shared_ptr<DataLoader> train_loader =
      DataLoader::from_config(data_cfg["train"], options.seed, shard);
  const int64_t classes = train_loader->dataset().num_classes();
  SETDET_CHECK(model->num_classes() == classes, o.config, ": the model predicts ",
               model->num_classes(), " classes, data.train has ", classes);
  LoaderBatchSource train_source(train_loader);

  const bool with_eval = data_cfg.has("val");
  EvalData val;
  if (with_eval) {
    std::shared_ptr<DataLoader> val_loader = DataLoader::from_config(
        unshuffled(data_cfg["val"]), options.seed, shard, /*pad_shards=*/false);
    SETDET_CHECK(val_loader->dataset().num_classes() == classes, o.config, ": data.val has ",
                 val_loader->dataset().num_classes(), " classes, data.train has ", classes);
    val.gt = val_loader->dataset().ground_truth();
    val.label_to_category = val_loader->dataset().label_to_category();
    val.source = std::make_shared<LoaderBatchSource>(val_loader);
  }

  const std::string yaml = resolved_yaml(cfg);
  std::string resume = o.resume_from;
  if (o.resume && resume.empty()) resume = (fs::path(options.work_dir) / "latest.pt").string();
  if (dist::is_main_process()) {
    SETDET_CHECK(!o.resume || fs::exists(resume), "--resume: no checkpoint at ", resume);
    fs::create_directories(options.work_dir);
    write_file_atomic((fs::path(options.work_dir) / "config.yaml").string(), yaml);
  } else {
    options.work_dir.clear();  // rank 0 alone writes logs, checkpoints and metrics
  }

  Runner runner(model, optimizer, schedule, options);
  runner.set_meta({cfg["optimizer"]["type"].as<std::string>(), yaml});
  for (auto& hook : build_hooks(cfg, with_eval)) runner.register_hook(hook);
  if (with_eval) runner.set_val_data(val);
  if (group != nullptr) {
    runner.register_hook(std::make_shared<DataParallelHook>(
        *group, std::make_unique<dist::GradientReducer>(*model, *group, dist_options.bucket_size_mb,
                                                        dist_options.find_unused_parameters)));
  }

  if (!resume.empty()) {
    const std::string local = group ? checkpoint_for_this_rank(resume, *group) : resume;
    runner.resume(local);
    if (local != resume) fs::remove(local);
  }

  g_runner = &runner;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  try {
    runner.train(train_source);
  } catch (...) {
    g_runner = nullptr;
    throw;
  }
  g_runner = nullptr;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (group != nullptr) group->barrier();  // no rank leaves while another still needs it
  if (!dist::is_main_process()) return 0;
  std::cout << "work dir: " << options.work_dir << "\n";
  if (runner.metrics().count("AP")) {
    std::cout << "AP " << runner.metrics().at("AP") << " AP50 " << runner.metrics().at("AP50")
              << " AP75 " << runner.metrics().at("AP75") << "\n";
  }
  return 0;
}

int run_train(const TrainOptions& o) {
  Config cfg = Config::load(o.config);
  for (const auto& s : o.overrides) cfg.set_override(s);
  cfg.check_keys({"model", "data", "optimizer", "lr_schedule", "runner", "grad_clip", "hooks",
                  "checkpoint_import", "distributed"});
  const auto dist_options = dist::DistOptions::from_config(cfg.find("distributed"));
  const auto launch = dist::launch_env_from_environment();
  SETDET_CHECK(o.nproc == 0 || !launch, "--nproc: this process is already rank ",
               launch ? launch->rank : 0, " of a launched run (WORLD_SIZE is set)");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (o.nproc > 1) {
    dist::LocalLaunch local;
    local.nproc = o.nproc;
    local.master_port = o.master_port;
    local.args = dist::own_arguments_without("--nproc");
    // the cores are divided among the workers unless --threads says otherwise
    if (requested_threads() == 0) {
      local.args.push_back("--threads");
      local.args.push_back(std::to_string(std::max(1, cores / o.nproc)));
    }
    return dist::launch_local_workers(local);
  }
  std::shared_ptr<dist::ProcessGroup> group;
  if (launch && launch->world_size > 1) {
    std::signal(SIGPIPE, SIG_IGN);  // a dead peer's socket must give an error, not kill us
    if (requested_threads() == 0) init_threads(std::max(1, cores / launch->local_world_size));
    group = dist::init_process_group(*launch, dist_options);
    dist::set_process_group(group);
  }
  try {
    return train_process(o, cfg, dist_options);
  } catch (const std::exception& e) {
    if (group) dist::exit_after_failure(*group, e);
    throw;
  }
}

const RegisterCommand kTrain{
    "train", "train a detector from a config (hook-driven runner)", [](CLI::App& app) {
      auto o = std::make_shared<TrainOptions>();
      app.add_option("config", o->config, "config YAML")->required()->check(CLI::ExistingFile);
      app.add_option("--work-dir", o->work_dir,
                     "output directory (default: work_dirs/<config stem>)");
      auto* resume = app.add_flag("--resume", o->resume, "resume from <work-dir>/latest.pt");
      auto* resume_from =
          app.add_option("--resume-from", o->resume_from, "resume from this checkpoint")
              ->check(CLI::ExistingFile)
              ->excludes(resume);
      app.add_option("--load-from", o->load_from,
                     "initial weights: a setdet checkpoint or a torch.save state_dict (names "
                     "mapped by the config's checkpoint_import); training starts at iteration 0")
          ->check(CLI::ExistingFile)
          ->excludes(resume)
          ->excludes(resume_from);
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      app.add_option("--nproc", o->nproc,
                     "data-parallel: start N local worker processes (data.train.batch_size is "
                     "per process; default: one process, or the launcher's)")
          ->default_str("")  // 0: not given
          ->check(CLI::Range(1, 1024));
      app.add_option("--master-port", o->master_port,
                     "--nproc: the rendezvous port on 127.0.0.1 (default: a free one)")
          ->default_str("")  // 0: a free one
          ->check(CLI::Range(0, 65535));
      return [o] { return run_train(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
