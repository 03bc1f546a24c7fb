#include "setdet/engine/hooks.h"

#include <fmt/format.h>
#include <torch/nn/utils/clip_grad.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>

#include "setdet/core/io/json_text.h"
#include "setdet/distributed/process_group.h"
#include "setdet/engine/optim.h"
#include "setdet/engine/runner.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

const std::map<std::string, int>& priority_names() {
  static const std::map<std::string, int> names{
      {"HIGHEST", priority::kHighest}, {"VERY_HIGH", priority::kVeryHigh},
      {"HIGH", priority::kHigh},       {"ABOVE_NORMAL", priority::kAboveNormal},
      {"NORMAL", priority::kNormal},   {"BELOW_NORMAL", priority::kBelowNormal},
      {"LOW", priority::kLow},         {"VERY_LOW", priority::kVeryLow},
      {"LOWEST", priority::kLowest}};
  return names;
}

std::shared_ptr<Hook> with_priority(std::shared_ptr<Hook> hook, const Config& cfg) {
  if (cfg.has("priority")) hook->set_priority(parse_priority(cfg["priority"]));
  return hook;
}

int64_t non_negative(const Config& cfg, const std::string& key, int64_t fallback) {
  const auto v = cfg.get<int64_t>(key, fallback);
  SETDET_CHECK(v >= 0, cfg.where(), ".", key, ": expected >= 0, got ", v);
  return v;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

// Remaining training seconds: the nearest of the time budget and the iteration limit (at the
// rate `seconds_per_iter`); negative if unknown.
double eta_seconds(const Runner& runner, double seconds_per_iter) {
  const auto p = runner.progress();
  double eta = -1.0;
  if (p.max_seconds > 0) eta = std::max(0.0, p.max_seconds - p.elapsed_seconds);
  const int64_t total = p.total_iters();
  if (total > 0 && seconds_per_iter > 0) {
    const double by_iters =
        static_cast<double>(std::max<int64_t>(total - p.iter, 0)) * seconds_per_iter;
    eta = eta < 0 ? by_iters : std::min(eta, by_iters);
  }
  return eta;
}

double fraction_done(const Runner& runner) {
  const auto p = runner.progress();
  double f = 0.0;
  if (p.max_seconds > 0) f = std::max(f, p.elapsed_seconds / p.max_seconds);
  if (p.total_iters() > 0) {
    f = std::max(f, static_cast<double>(p.iter) / static_cast<double>(p.total_iters()));
  }
  return std::clamp(f, 0.0, 1.0);
}

std::string epoch_text(const Runner& runner) {
  const auto& o = runner.options();
  return o.max_epochs > 0 ? fmt::format("{}/{}", runner.epoch() + 1, o.max_epochs)
                          : fmt::format("{}", runner.epoch() + 1);
}

YAML::Node hook_node(const std::string& type) {
  YAML::Node n(YAML::NodeType::Map);
  n["type"] = type;
  return n;
}

SETDET_REGISTER(HookRegistry, "LrSchedulerHook", [](const Config& cfg) {
  cfg.check_keys({"priority"});
  return with_priority(std::make_shared<LrSchedulerHook>(), cfg);
});

SETDET_REGISTER(HookRegistry, "OptimizerHook", [](const Config& cfg) {
  cfg.check_keys({"priority", "grad_clip"});
  double max_norm = 0.0;
  double norm_type = 2.0;
  if (auto clip = cfg.find("grad_clip"); clip && !clip->node().IsNull()) {
    clip->check_keys({"max_norm", "norm_type"});
    max_norm = clip->get<double>("max_norm");
    norm_type = clip->get<double>("norm_type", 2.0);
    SETDET_CHECK(max_norm > 0, clip->where(), ".max_norm: expected > 0, got ", max_norm);
    SETDET_CHECK(norm_type > 0, clip->where(), ".norm_type: expected > 0, got ", norm_type);
  }
  return with_priority(std::make_shared<OptimizerHook>(max_norm, norm_type), cfg);
});

SETDET_REGISTER(HookRegistry, "CheckpointHook", [](const Config& cfg) {
  cfg.check_keys({"priority", "interval", "interval_iters", "max_keep"});
  return with_priority(std::make_shared<CheckpointHook>(non_negative(cfg, "interval", 1),
                                                        non_negative(cfg, "interval_iters", 0),
                                                        non_negative(cfg, "max_keep", 0)),
                       cfg);
});

SETDET_REGISTER(HookRegistry, "IterTimerHook", [](const Config& cfg) {
  cfg.check_keys({"priority"});
  return with_priority(std::make_shared<IterTimerHook>(), cfg);
});

SETDET_REGISTER(HookRegistry, "EvalHook", [](const Config& cfg) {
  cfg.check_keys({"priority", "interval", "interval_iters"});
  return with_priority(std::make_shared<EvalHook>(non_negative(cfg, "interval", 1),
                                                  non_negative(cfg, "interval_iters", 0)),
                       cfg);
});

SETDET_REGISTER(HookRegistry, "LoggerHook", [](const Config& cfg) {
  cfg.check_keys({"priority", "interval", "refresh_seconds", "progress_bar"});
  const int64_t interval = non_negative(cfg, "interval", 50);
  SETDET_CHECK(interval > 0, cfg.where(), ".interval: expected > 0");
  const double refresh = cfg.get<double>("refresh_seconds", 0.5);
  SETDET_CHECK(refresh >= 0, cfg.where(), ".refresh_seconds: expected >= 0, got ", refresh);
  return with_priority(
      std::make_shared<LoggerHook>(interval, refresh, cfg.get<bool>("progress_bar", true)), cfg);
});

}  // namespace

int parse_priority(const Config& cfg) {
  const std::string text = cfg.as<std::string>();
  auto it = priority_names().find(text);
  if (it != priority_names().end()) return it->second;
  int value = -1;
  try {
    size_t used = 0;
    value = std::stoi(text, &used);
    if (used != text.size()) value = -1;
  } catch (const std::exception&) {
    value = -1;
  }
  SETDET_CHECK(value >= 0 && value <= 100, cfg.where(),
               ": expected a priority in 0..100 or one of HIGHEST, VERY_HIGH, HIGH, "
               "ABOVE_NORMAL, NORMAL, BELOW_NORMAL, LOW, VERY_LOW, LOWEST, got '",
               text, "'");
  return value;
}

std::vector<std::shared_ptr<Hook>> build_hooks(const Config& root, bool with_eval) {
  const auto runner_cfg = root.find("runner");
  auto runner_int = [&](const std::string& key, int64_t fallback) {
    return runner_cfg ? runner_cfg->get<int64_t>(key, fallback) : fallback;
  };
  std::vector<YAML::Node> defaults;
  defaults.push_back(hook_node("LrSchedulerHook"));
  YAML::Node optimizer = hook_node("OptimizerHook");
  if (root.has("grad_clip")) optimizer["grad_clip"] = YAML::Clone(root["grad_clip"].node());
  defaults.push_back(optimizer);
  YAML::Node checkpoint = hook_node("CheckpointHook");
  checkpoint["interval"] = runner_int("checkpoint_interval", 1);
  defaults.push_back(checkpoint);
  defaults.push_back(hook_node("IterTimerHook"));
  if (with_eval) {
    YAML::Node eval = hook_node("EvalHook");
    eval["interval"] = runner_int("eval_interval", 1);
    defaults.push_back(eval);
  }
  YAML::Node logger = hook_node("LoggerHook");
  logger["interval"] = runner_int("log_interval", 50);
  defaults.push_back(logger);

  // Default hooks keep the root's file and an empty path, so their errors name "grad_clip...".
  std::vector<Config> configs;
  for (const auto& d : defaults) configs.emplace_back(d, root.file(), "");
  if (auto user = root.find("hooks"); user && !user->node().IsNull()) {
    SETDET_CHECK(user->is_sequence(), user->where(),
                 ": expected a list of hooks ({type: ..., priority: ...}), got ", user->dump());
    for (size_t i = 0; i < user->size(); ++i) {
      const Config entry = user->at(i);
      SETDET_CHECK(entry.is_map() && entry.has("type"), entry.where(),
                   ": a hook needs a 'type' key (known: ", HookRegistry().known(), ")");
      const auto type = entry["type"].as<std::string>();
      auto same = std::find_if(configs.begin(), configs.end(), [&](const Config& c) {
        return c["type"].as<std::string>() == type;
      });
      if (same == configs.end()) {
        configs.push_back(entry);
        continue;
      }
      YAML::Node merged = YAML::Clone(same->node());
      for (const auto& kv : entry.node())
        merged[kv.first.as<std::string>()] = YAML::Clone(kv.second);
      *same = Config(merged, entry.file(), entry.path());
    }
  }
  std::vector<std::shared_ptr<Hook>> hooks;
  for (const auto& c : configs) hooks.push_back(HookRegistry().build(c));
  return hooks;
}

// ---- LrSchedulerHook ----

void LrSchedulerHook::before_run(Runner& runner) { before_train_iter(runner); }

void LrSchedulerHook::before_train_iter(Runner& runner) {
  const double f = runner.schedule().factor(runner.progress());
  std::vector<double> lrs = runner.base_lrs();
  for (double& lr : lrs) lr *= f;
  set_group_lrs(runner.optimizer(), lrs);
}

// ---- OptimizerHook ----

namespace {

// "loss_bbox is nan (loss_cls=0.53 loss_bbox=nan loss_centerness=0.61)": the first non-finite
// term of the loss (the sum when no single term is), then every scalar output.
std::string nonfinite_terms(const Runner& runner) {
  std::string culprit, parts;
  for (const auto& [name, value] : runner.outputs()) {
    if (value.numel() != 1) continue;
    const double v = value.item<double>();
    parts += fmt::format("{}{}={}", parts.empty() ? "" : " ", name, v);
    if (culprit.empty() && name.rfind("loss", 0) == 0 && !std::isfinite(v)) {
      culprit = fmt::format("{} is {}", name, v);
    }
  }
  if (culprit.empty()) culprit = fmt::format("the loss sum is {}", runner.loss().item<double>());
  return culprit + " (" + parts + ")";
}

}  // namespace

namespace {

// "name (norm), ..." of the k parameters with the largest gradient norms, divided by `scale` (the
// clipping factor already applied).
std::string largest_gradients(Runner& runner, size_t k, double scale) {
  std::vector<std::pair<double, std::string>> norms;
  for (const auto& item : runner.model().named_parameters()) {
    if (!item.value().grad().defined()) continue;
    norms.emplace_back(item.value().grad().norm().item<double>() / scale, item.key());
  }
  const size_t n = std::min(k, norms.size());
  std::partial_sort(norms.begin(), norms.begin() + static_cast<std::ptrdiff_t>(n), norms.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += fmt::format("{}{} ({:.3g})", i ? ", " : "", norms[i].second, norms[i].first);
  }
  return out;
}

}  // namespace

void OptimizerHook::after_train_iter(Runner& runner) {
  if (!std::isfinite(runner.log_buffer().last("loss"))) {
    const auto& o = runner.options();
    const std::string what =
        fmt::format("non-finite loss at iteration {} (epoch {}): {}", runner.iter(),
                    runner.epoch() + 1, nonfinite_terms(runner));
    if (o.nonfinite == "skip" && skipped_ < o.nonfinite_max_skips) {
      ++skipped_;
      runner.log(fmt::format("{}; batch skipped without an optimiser step ({} of at most {})", what,
                             skipped_, o.nonfinite_max_skips));
      return;
    }
    const std::string skips =
        o.nonfinite == "skip"
            ? fmt::format(", after {} skipped batches (runner.nonfinite_max_skips)", skipped_)
            : "";
    throw Error(
        fmt::format("{}{}; training stopped, {}", what, skips, runner.last_checkpoint_text()));
  }
  const double start = runner.now();
  auto& optimizer = runner.optimizer();
  optimizer.zero_grad();
  runner.loss().backward();
  if (max_norm_ > 0) {
    std::vector<at::Tensor> params;
    for (const auto& g : optimizer.param_groups()) {
      params.insert(params.end(), g.params().begin(), g.params().end());
    }
    const double norm = torch::nn::utils::clip_grad_norm_(params, max_norm_, norm_type_);
    runner.log_buffer().update("grad_norm", norm);
    // An exploding gradient (100x the clipping norm): name the parameters it comes from, at most
    // once per log interval, so a diverging run says where to look.
    const int64_t every = std::max<int64_t>(runner.options().log_interval, 1);
    if (norm > 100.0 * max_norm_ && (reported_iter_ < 0 || runner.iter() - reported_iter_ >= every)) {
      reported_iter_ = runner.iter();
      runner.log(fmt::format("gradient norm {:.3g} (> 100 x grad_clip.max_norm) at iteration {}; "
                             "before clipping, largest in: {}",
                             norm, runner.iter(), largest_gradients(runner, 3, max_norm_ / norm)));
    }
  }
  optimizer.step();
  runner.log_buffer().update("backward_time", runner.now() - start);
}

// ---- CheckpointHook ----

void CheckpointHook::after_train_iter(Runner& runner) {
  if (runner.options().work_dir.empty() || interval_iters_ == 0) return;
  if (runner.iter() % interval_iters_ != 0) return;
  runner.save_checkpoint(runner.work_path("latest.pt"));
  last_saved_iter_ = runner.iter();
}

void CheckpointHook::after_train_epoch(Runner& runner) {
  if (runner.options().work_dir.empty() || interval_ == 0 || !runner.epoch_complete()) return;
  const int64_t done = runner.epoch() + 1;
  if (done % interval_ != 0) return;
  const std::string file = runner.work_path(fmt::format("epoch_{}.pt", done));
  runner.save_checkpoint(file);
  runner.save_checkpoint(runner.work_path("latest.pt"));
  last_saved_iter_ = runner.iter();
  epoch_files_.push_back(file);
  while (max_keep_ > 0 && static_cast<int64_t>(epoch_files_.size()) > max_keep_) {
    std::error_code ec;
    fs::remove(epoch_files_.front(), ec);
    epoch_files_.erase(epoch_files_.begin());
  }
}

void CheckpointHook::after_run(Runner& runner) {
  if (runner.options().work_dir.empty() || last_saved_iter_ == runner.iter()) return;
  runner.save_checkpoint(runner.work_path("latest.pt"));
  last_saved_iter_ = runner.iter();
}

// ---- IterTimerHook ----

void IterTimerHook::before_train_epoch(Runner& runner) { last_ = runner.now(); }

void IterTimerHook::before_train_iter(Runner& runner) {
  runner.log_buffer().update("data_time", runner.now() - last_);
}

void IterTimerHook::after_train_iter(Runner& runner) {
  const double t = runner.now();
  runner.log_buffer().update("time", t - last_);
  last_ = t;
}

// ---- EvalHook ----

void EvalHook::before_run(Runner& runner) {
  SETDET_CHECK(runner.has_val_data(), "EvalHook: no validation data (data.val) configured");
}

void EvalHook::after_train_iter(Runner& runner) {
  if (interval_iters_ == 0 || runner.iter() % interval_iters_ != 0) return;
  runner.validate();
  evaluated_at_iter_ = runner.iter();
}
void EvalHook::after_train_epoch(Runner& runner) {
  if (evaluated_at_iter_ == runner.iter()) return;
  const bool periodic =
      runner.epoch_complete() && interval_ > 0 && (runner.epoch() + 1) % interval_ == 0;
  if (!periodic && !runner.finished()) return;
  runner.validate();
  evaluated_at_iter_ = runner.iter();
}

void EvalHook::after_run(Runner& runner) {
  if (evaluated_at_iter_ == runner.iter()) return;
  runner.validate();
  evaluated_at_iter_ = runner.iter();
}

// ---- LoggerHook ----

void LoggerHook::clear_bar() {
  if (!bar_shown_) return;
  std::cerr << "\r\033[K" << std::flush;
  bar_shown_ = false;
}

void LoggerHook::before_run(Runner& runner) {
  tty_ = progress_bar_ && isatty(STDERR_FILENO) != 0 && dist::is_main_process();
  interval_start_ = runner.elapsed();
  interval_start_iter_ = runner.iter();
  interval_start_images_ = runner.state().images_seen;
  const auto& o = runner.options();
  std::string limits;
  if (o.max_epochs > 0) limits += fmt::format(" max_epochs {}", o.max_epochs);
  if (o.max_iters > 0) limits += fmt::format(" max_iters {}", o.max_iters);
  if (o.max_seconds > 0) limits += fmt::format(" max_seconds {}", o.max_seconds);
  std::string hooks;
  for (const auto& h : runner.hooks()) {
    hooks += fmt::format("{}{}({})", hooks.empty() ? "" : " ", h->name(), h->priority());
  }
  runner.log(fmt::format("training: {} iterations/epoch,{}, seed {}, lr schedule {}",
                         runner.iters_per_epoch(), limits, o.seed, runner.schedule().describe()));
  runner.log("hooks: " + hooks);
}

void LoggerHook::after_train_iter(Runner& runner) {
  const double now = runner.elapsed();
  const int64_t iters = runner.iter() - interval_start_iter_;
  const double dt = now - interval_start_;
  const double it_per_s = dt > 0 ? static_cast<double>(iters) / dt : 0.0;
  const double img_per_s =
      dt > 0 ? static_cast<double>(runner.state().images_seen - interval_start_images_) / dt : 0.0;
  const double eta = eta_seconds(runner, it_per_s > 0 ? 1.0 / it_per_s : 0.0);
  const double lr = runner.current_lrs().empty() ? 0.0 : runner.current_lrs().front();

  if (runner.iter() % interval_ != 0 || runner.log_buffer().empty()) {
    if (tty_ && runner.now() - last_bar_ >= refresh_seconds_) {
      const double f = fraction_done(runner);
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(f * kWidth);
      std::cerr << "\r\033[K[" << std::string(filled, '#') << std::string(kWidth - filled, ' ')
                << fmt::format(
                       "] {:3.0f}% iter {} {:.2f} it/s {:.1f} img/s loss {:.4f} lr {:.3e} "
                       "eta {}",
                       100 * f, runner.iter(), it_per_s, img_per_s,
                       runner.log_buffer().last("loss"), lr, format_duration(eta))
                << std::flush;
      bar_shown_ = true;
      last_bar_ = runner.now();
    }
    return;
  }
  clear_bar();
  std::string line =
      fmt::format("epoch {} [{}/{}] iter {} lr {:.3e} eta {} {:.2f} it/s {:.1f} img/s",
                  epoch_text(runner), runner.state().iter_in_epoch, runner.iters_per_epoch(),
                  runner.iter(), lr, format_duration(eta), it_per_s, img_per_s);
  std::string json = fmt::format(
      "{{\"mode\": \"train\", \"epoch\": {}, \"iter\": {}, \"lr\": {}, \"elapsed\": {}, "
      "\"iters_per_second\": {}, \"images_per_second\": {}",
      runner.epoch() + 1, runner.iter(), json_number(lr), json_number(now), json_number(it_per_s),
      json_number(img_per_s));
  // losses first, then the other scalars (grad_norm, time, data_time, ...)
  auto averages = runner.log_buffer().averages();
  std::stable_partition(averages.begin(), averages.end(),
                        [](const auto& kv) { return kv.first.rfind("loss", 0) == 0; });
  for (const auto& [key, value] : averages) {
    line += fmt::format(" {} {:.4f}", key, value);
    json += fmt::format(", \"{}\": {}", key, json_number(value));
  }
  runner.log(line);
  runner.append_jsonl(json + "}");
  runner.log_buffer().clear();
  interval_start_ = now;
  interval_start_iter_ = runner.iter();
  interval_start_images_ = runner.state().images_seen;
}

void LoggerHook::after_train_epoch(Runner& runner) {
  clear_bar();
  if (runner.epoch_complete()) {
    runner.log(fmt::format("epoch {} done: iteration {}, {:.1f} s trained", epoch_text(runner),
                           runner.iter(), runner.elapsed()));
  }
}

void LoggerHook::after_val_epoch(Runner& runner) {
  clear_bar();
  runner.log(fmt::format("evaluation after iteration {}:", runner.iter()));
  runner.log(runner.last_eval_summary());
  std::string json = fmt::format("{{\"mode\": \"val\", \"epoch\": {}, \"iter\": {}",
                                 runner.epoch() + 1, runner.iter());
  for (const auto* name : coco_stat_names()) {
    auto it = runner.metrics().find(name);
    if (it != runner.metrics().end())
      json += fmt::format(", \"{}\": {}", name, json_number(it->second));
  }
  runner.append_jsonl(json + "}");
}

void LoggerHook::after_run(Runner& runner) {
  clear_bar();
  const auto& st = runner.state();
  const double epochs = static_cast<double>(st.epoch) +
                        static_cast<double>(st.iter_in_epoch) /
                            static_cast<double>(std::max<int64_t>(runner.iters_per_epoch(), 1));
  runner.log(
      fmt::format("training stopped: {} iterations, {:.2f} epochs, {:.1f} s trained, {} "
                  "images",
                  st.iter, epochs, st.elapsed_seconds, st.images_seen));
}

}  // namespace setdet
