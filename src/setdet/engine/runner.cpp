#include "setdet/engine/runner.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/distributed/process_group.h"
#include "setdet/engine/optim.h"

namespace setdet {

namespace fs = std::filesystem;

RunnerOptions RunnerOptions::from_config(const std::optional<Config>& cfg) {
  RunnerOptions o;
  if (!cfg) return o;
  cfg->check_keys({"max_epochs", "max_iters", "max_seconds", "seed", "log_interval",
                   "eval_interval", "checkpoint_interval", "autocast", "nonfinite",
                   "nonfinite_max_skips"});
  auto non_negative_int = [&](const std::string& key, int64_t fallback) {
    const auto v = cfg->get<int64_t>(key, fallback);
    SETDET_CHECK(v >= 0, cfg->where(), ".", key, ": expected >= 0, got ", v);
    return v;
  };
  o.max_epochs = non_negative_int("max_epochs", 0);
  o.max_iters = non_negative_int("max_iters", 0);
  o.max_seconds = cfg->get<double>("max_seconds", 0.0);
  SETDET_CHECK(o.max_seconds >= 0, cfg->where(), ".max_seconds: expected >= 0, got ",
               o.max_seconds);
  o.seed = static_cast<uint64_t>(non_negative_int("seed", 0));
  o.log_interval = non_negative_int("log_interval", 50);
  SETDET_CHECK(o.log_interval > 0, cfg->where(), ".log_interval: expected > 0");
  o.eval_interval = non_negative_int("eval_interval", 1);
  o.checkpoint_interval = non_negative_int("checkpoint_interval", 1);
  o.autocast = parse_autocast(cfg->get<std::string>("autocast", "off"), cfg->where() + ".autocast");
  o.nonfinite = cfg->get<std::string>("nonfinite", o.nonfinite);
  SETDET_CHECK(o.nonfinite == "stop" || o.nonfinite == "skip", cfg->where(),
               ".nonfinite: expected 'stop' or 'skip', got '", o.nonfinite, "'");
  o.nonfinite_max_skips = non_negative_int("nonfinite_max_skips", o.nonfinite_max_skips);
  SETDET_CHECK(o.max_epochs > 0 || o.max_iters > 0 || o.max_seconds > 0, cfg->where(),
               ": set at least one of max_epochs, max_iters, max_seconds");
  return o;
}

void LogBuffer::update(const std::string& key, double value) {
  auto it = sums_.find(key);
  if (it == sums_.end()) {
    order_.push_back(key);
    it = sums_.emplace(key, std::make_pair(0.0, int64_t{0})).first;
  }
  it->second.first += value;
  it->second.second += 1;
  last_[key] = value;
}

std::vector<std::pair<std::string, double>> LogBuffer::averages() const {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& key : order_) {
    const auto& s = sums_.at(key);
    out.emplace_back(key, s.first / static_cast<double>(s.second));
  }
  return out;
}

double LogBuffer::last(const std::string& key, double fallback) const {
  auto it = last_.find(key);
  return it == last_.end() ? fallback : it->second;
}

void LogBuffer::clear() {
  order_.clear();
  sums_.clear();
}

Runner::Runner(std::shared_ptr<DetectorModel> model,
               std::shared_ptr<torch::optim::Optimizer> optimizer,
               std::shared_ptr<LrSchedule> schedule, RunnerOptions options)
    : model_(std::move(model)),
      optimizer_(std::move(optimizer)),
      schedule_(std::move(schedule)),
      options_(std::move(options)) {
  TORCH_CHECK(model_ && optimizer_ && schedule_,
              "Runner needs a model, an optimizer and a schedule");
  base_lrs_ = group_lrs(*optimizer_);
  state_.seed = options_.seed;
  clock_ = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
}

void Runner::register_hook(std::shared_ptr<Hook> hook) {
  TORCH_CHECK(hook, "register_hook: null hook");
  auto pos = hooks_.end();
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it) {
    if ((*it)->priority() > hook->priority()) {
      pos = it;
      break;
    }
  }
  hooks_.insert(pos, std::move(hook));
}

void Runner::call(void (Hook::*stage)(Runner&)) {
  for (auto& hook : hooks_) ((*hook).*stage)(*this);
}

TrainProgress Runner::progress() const {
  TrainProgress p;
  p.iter = state_.iter;
  p.epoch = state_.epoch;
  p.iters_per_epoch = iters_per_epoch_;
  p.max_iters = options_.max_iters;
  p.max_epochs = options_.max_epochs;
  p.elapsed_seconds = agreed_elapsed_ >= 0 ? agreed_elapsed_ : elapsed();
  p.max_seconds = options_.max_seconds;
  return p;
}

std::vector<double> Runner::current_lrs() const { return group_lrs(*optimizer_); }

double Runner::elapsed() const {
  return elapsed_base_ + (running_since_ >= 0 ? clock_() - running_since_ : 0.0);
}

void Runner::pause_timer() {
  if (running_since_ < 0) return;
  elapsed_base_ += clock_() - running_since_;
  running_since_ = -1.0;
}

void Runner::resume_timer() {
  if (running_since_ >= 0) return;
  running_since_ = clock_();
}

std::string Runner::work_path(const std::string& name) const {
  return (fs::path(options_.work_dir) / name).string();
}

void Runner::log(const std::string& line) {
  if (!dist::is_main_process()) return;
  std::cerr << line << "\n";
  if (log_file_.is_open()) log_file_ << line << "\n" << std::flush;
}

void Runner::append_jsonl(const std::string& json_object) {
  if (jsonl_file_.is_open()) jsonl_file_ << json_object << "\n" << std::flush;
}

void Runner::resume(const std::string& checkpoint) {
  const auto loaded = load_checkpoint(checkpoint, *model_, optimizer_.get(), meta_.optimizer_type,
                                      /*restore_rng=*/true);
  SETDET_CHECK(loaded.state.seed == options_.seed, checkpoint, ": saved with seed ",
               loaded.state.seed, ", the config has runner.seed ", options_.seed,
               " (the data order would differ)");
  state_ = loaded.state;
  elapsed_base_ = state_.elapsed_seconds;
  last_checkpoint_ = checkpoint;
  last_checkpoint_iter_ = state_.iter;
  log(fmt::format("resumed from {} at epoch {}, iteration {} ({:.1f} s trained)", checkpoint,
                  state_.epoch + 1, state_.iter, state_.elapsed_seconds));
}

void Runner::save_checkpoint(const std::string& path) {
  pause_timer();
  TrainState s = state_;
  s.elapsed_seconds = elapsed();
  if (epoch_complete_) {
    // Saved in after_train_epoch of a finished epoch: resume with the next one.
    s.epoch += 1;
    s.iter_in_epoch = 0;
  }
  try {
    setdet::save_checkpoint(path, *model_, optimizer_.get(), s, meta_);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + "; training stopped at iteration " +
                std::to_string(s.iter) + ", " + last_checkpoint_text());
  }
  last_checkpoint_ = path;
  last_checkpoint_iter_ = s.iter;
  resume_timer();
}

std::string Runner::last_checkpoint_text() const {
  if (last_checkpoint_.empty()) return "no checkpoint was saved in this run";
  return "the last good checkpoint is " + last_checkpoint_ + " (iteration " +
         std::to_string(last_checkpoint_iter_) + ")";
}

void Runner::adopt_global_batch_size(int64_t size) {
  const int64_t saved = state_.global_batch_size;
  state_.global_batch_size = size;
  if (saved <= 0 || size <= 0 || saved == size || state_.iter_in_epoch == 0) return;
  // Resumed with another global batch (e.g. another world size): continue at the same image of
  // the epoch, rounded down to a whole batch.
  const int64_t image = state_.iter_in_epoch * saved;
  state_.iter_in_epoch = image / size;
  log(
      fmt::format("resumed with {} images per iteration instead of {}: epoch {} continues at "
                  "image {} (batch {}{})",
                  size, saved, state_.epoch + 1, state_.iter_in_epoch * size, state_.iter_in_epoch,
                  image % size ? fmt::format(", repeating {} images", image % size) : ""));
}

bool Runner::limit_reached() const {
  if (agreed_elapsed_ >= 0) {
    if (agreed_stop_) return true;
  } else {
    if (stop_requested_) return true;
    if (options_.max_seconds > 0 && elapsed() >= options_.max_seconds) return true;
  }
  if (options_.max_iters > 0 && state_.iter >= options_.max_iters) return true;
  if (options_.max_epochs > 0 && state_.epoch >= options_.max_epochs) return true;
  return false;
}

std::map<std::string, double> Runner::validate() {
  SETDET_CHECK(has_val_data(), "validate: no validation data (data.val) configured");
  const bool was_running = running_since_ >= 0;
  pause_timer();
  call(&Hook::before_val_epoch);
  EvalCallbacks callbacks{[this] { call(&Hook::before_val_iter); },
                          [this] { call(&Hook::after_val_iter); }};
  const auto result = evaluate_detector(*model_, val_, callbacks);
  metrics_ = coco_stats_map(result.coco);
  last_eval_summary_ = format_coco_summary(result.coco);
  eval_seconds_total_ += result.inference_seconds + result.eval_seconds;
  eval_images_ = result.images;
  call(&Hook::after_val_epoch);
  if (was_running) resume_timer();
  return metrics_;
}

void Runner::train(BatchSource& data) {
  SETDET_CHECK(options_.max_epochs > 0 || options_.max_iters > 0 || options_.max_seconds > 0,
               "runner: set at least one of max_epochs, max_iters, max_seconds");
  iters_per_epoch_ = data.batches_per_epoch();
  SETDET_CHECK(iters_per_epoch_ > 0, "the training data yields no batches");
  adopt_global_batch_size(data.global_batch_size());
  schedule_->check_limits(progress());
  if (!options_.work_dir.empty()) {
    fs::create_directories(options_.work_dir);
    log_file_.open(work_path("train.log"), std::ios::app);
    jsonl_file_.open(work_path("log.jsonl"), std::ios::app);
  }
  finished_ = false;
  stop_requested_ = false;
  if (dist::world_size() > 1) {
    agreed_elapsed_ = elapsed_base_;
    agreed_stop_ = options_.max_seconds > 0 && elapsed_base_ >= options_.max_seconds;
  }
  model_->train();
  call(&Hook::before_run);
  resume_timer();

  finished_ = limit_reached();
  while (!finished_) {
    data.start_epoch(state_.epoch, state_.iter_in_epoch);
    epoch_complete_ = false;
    call(&Hook::before_train_epoch);
    while (true) {
      auto next = data.next();
      if (!next) {
        epoch_complete_ = true;
        break;
      }
      batch_ = std::move(*next);
      call(&Hook::before_train_iter);
      const double forward_start = clock_();
      {
        const AutocastGuard autocast(options_.autocast, batch_.images.device().type());
        outputs_ = model_->losses(batch_);
      }
      loss_ = at::Tensor();
      for (const auto& [name, value] : outputs_) {
        if (name.rfind("loss", 0) != 0) continue;
        loss_ = loss_.defined() ? loss_ + value : value;
      }
      TORCH_CHECK(loss_.defined(), "the model's losses() returned no entry named loss*");
      record_iteration(clock_() - forward_start);
      call(&Hook::after_train_iter);
      if (limit_reached()) {
        finished_ = true;
        break;
      }
    }
    SETDET_CHECK(state_.iter_in_epoch > 0 || finished_, "epoch ", state_.epoch + 1,
                 " of the training data yielded no batches");
    // Stopped right after the epoch's last batch: that epoch is complete too.
    if (state_.iter_in_epoch >= iters_per_epoch_) epoch_complete_ = true;
    if (epoch_complete_ && options_.max_epochs > 0 && state_.epoch + 1 >= options_.max_epochs) {
      finished_ = true;
    }
    call(&Hook::after_train_epoch);
    if (epoch_complete_) {
      state_.epoch += 1;
      state_.iter_in_epoch = 0;
      epoch_complete_ = false;
    }
  }
  pause_timer();
  state_.elapsed_seconds = elapsed();
  call(&Hook::after_run);
  write_metrics();
  log_file_.close();
  jsonl_file_.close();
}

void Runner::record_iteration(double forward_seconds) {
  std::vector<std::string> names{"loss"};
  std::vector<double> values{loss_.item<double>()};
  for (const auto& [name, value] : outputs_) {
    if (name == "loss" || value.numel() != 1) continue;
    names.push_back(name);
    values.push_back(value.item<double>());
  }
  int64_t images = batch_.size();
  if (dist::ProcessGroup* group = dist::current_process_group(); group && group->world_size() > 1) {
    const size_t k = values.size();
    const bool stop =
        stop_requested_ || (options_.max_seconds > 0 && elapsed() >= options_.max_seconds);
    values.insert(values.end(), {static_cast<double>(images), stop ? 1.0 : 0.0, elapsed()});
    values = group->all_reduce_sum(values);
    const double w = static_cast<double>(group->world_size());
    for (size_t i = 0; i < k; ++i) values[i] /= w;
    images = std::llround(values[k]);
    agreed_stop_ = values[k + 1] > 0;
    agreed_elapsed_ = values[k + 2] / w;
    values.resize(k);
  }
  log_buffer_.update("loss", values[0]);
  log_buffer_.update("forward_time", forward_seconds);
  for (size_t i = 1; i < values.size(); ++i) log_buffer_.update(names[i], values[i]);
  state_.iter += 1;
  state_.iter_in_epoch += 1;
  state_.images_seen += images;
}

void Runner::write_metrics() {
  if (options_.work_dir.empty()) return;
  std::ostringstream os;
  os << "{\n";
  for (const auto* name : coco_stat_names()) {
    auto it = metrics_.find(name);
    if (it != metrics_.end()) os << "  \"" << name << "\": " << json_number(it->second) << ",\n";
  }
  const double seconds = state_.elapsed_seconds;
  os << "  \"iters\": " << state_.iter << ",\n";
  os << "  \"epochs\": "
     << json_number(static_cast<double>(state_.epoch) +
                    static_cast<double>(state_.iter_in_epoch) /
                        static_cast<double>(std::max<int64_t>(iters_per_epoch_, 1)))
     << ",\n";
  os << "  \"images\": " << state_.images_seen << ",\n";
  os << "  \"train_seconds\": " << json_number(seconds) << ",\n";
  os << "  \"iters_per_second\": "
     << json_number(seconds > 0 ? static_cast<double>(state_.iter) / seconds : 0.0) << ",\n";
  os << "  \"images_per_second\": "
     << json_number(seconds > 0 ? static_cast<double>(state_.images_seen) / seconds : 0.0) << ",\n";
  os << "  \"eval_seconds\": " << json_number(eval_seconds_total_) << ",\n";
  os << "  \"eval_images\": " << eval_images_ << ",\n";
  os << "  \"final_losses\": {";
  bool first = true;
  for (const auto& [name, value] : outputs_) {
    if (value.numel() != 1) continue;
    os << (first ? "" : ", ") << "\"" << name << "\": " << json_number(value.item<double>());
    first = false;
  }
  os << "},\n";
  os << "  \"seed\": " << options_.seed << ",\n";
  os << "  \"world_size\": " << dist::world_size() << ",\n";
  os << "  \"threads\": " << at::get_num_threads() << "\n";
  os << "}\n";
  write_file_atomic(work_path("metrics.json"), os.str());
}

}  // namespace setdet
