// `setdet train CONFIG [--work-dir DIR] [--resume | --resume-from CKPT | --load-from CKPT]
// [--set key=value ...]`:
// trains the configured detector with the hook-driven runner. The work directory receives the
// resolved config (config.yaml), train.log, log.jsonl, checkpoints (latest.pt, epoch_N.pt) and
// metrics.json. Ctrl-C stops after the current iteration and saves latest.pt (a second Ctrl-C
// kills the process).
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/engine/hooks.h"
#include "setdet/engine/loader_source.h"
#include "setdet/engine/lr_schedule.h"
#include "setdet/engine/optim.h"
#include "setdet/engine/runner.h"
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

int run_train(const TrainOptions& o) {
  Config cfg = Config::load(o.config);
  for (const auto& s : o.overrides) cfg.set_override(s);
  cfg.check_keys({"model", "data", "optimizer", "lr_schedule", "runner", "grad_clip", "hooks",
                  "checkpoint_import"});
  auto options = RunnerOptions::from_config(cfg["runner"]);
  options.work_dir = o.work_dir.empty()
                         ? (fs::path("work_dirs") / fs::path(o.config).stem()).string()
                         : o.work_dir;
  const Config data_cfg = cfg["data"];
  data_cfg.check_keys({"train", "val", "test"});

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
      DataLoader::from_config(data_cfg["train"], options.seed);
  const int64_t classes = train_loader->dataset().num_classes();
  SETDET_CHECK(model->num_classes() == classes, o.config, ": the model predicts ",
               model->num_classes(), " classes, data.train has ", classes);
  LoaderBatchSource train_source(train_loader);

  const bool with_eval = data_cfg.has("val");
  EvalData val;
  if (with_eval) {
    std::shared_ptr<DataLoader> val_loader =
        DataLoader::from_config(unshuffled(data_cfg["val"]), options.seed);
    SETDET_CHECK(val_loader->dataset().num_classes() == classes, o.config, ": data.val has ",
                 val_loader->dataset().num_classes(), " classes, data.train has ", classes);
    val.gt = val_loader->dataset().ground_truth();
    val.label_to_category = val_loader->dataset().label_to_category();
    val.source = std::make_shared<LoaderBatchSource>(val_loader);
  }

  fs::create_directories(options.work_dir);
  const std::string yaml = resolved_yaml(cfg);
  write_file_atomic((fs::path(options.work_dir) / "config.yaml").string(), yaml);

  Runner runner(model, optimizer, schedule, options);
  runner.set_meta({cfg["optimizer"]["type"].as<std::string>(), yaml});
  for (auto& hook : build_hooks(cfg, with_eval)) runner.register_hook(hook);
  if (with_eval) runner.set_val_data(val);

  std::string resume = o.resume_from;
  if (o.resume && resume.empty()) {
    resume = (fs::path(options.work_dir) / "latest.pt").string();
    SETDET_CHECK(fs::exists(resume), "--resume: no checkpoint at ", resume);
  }
  if (!resume.empty()) runner.resume(resume);

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
  std::cout << "work dir: " << options.work_dir << "\n";
  if (runner.metrics().count("AP")) {
    std::cout << "AP " << runner.metrics().at("AP") << " AP50 " << runner.metrics().at("AP50")
              << " AP75 " << runner.metrics().at("AP75") << "\n";
  }
  return 0;
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
      return [o] { return run_train(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
