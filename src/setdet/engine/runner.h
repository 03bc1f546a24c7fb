// The training loop of the MMDetection paper (Sec. 3.2): the runner only iterates epochs and
// batches and computes the model's losses; everything else (lr updates, the optimiser step,
// checkpoints, evaluation, logging) is done by hooks called at fixed time points.
//
// Config (the `runner` section; one of max_epochs / max_iters / max_seconds is required, the
// first limit reached stops training):
//   runner: {max_epochs: 12, max_iters: 0, max_seconds: 0, seed: 0, log_interval: 50,
//            eval_interval: 1, checkpoint_interval: 1, autocast: off, nonfinite: stop,
//            nonfinite_max_skips: 10}
// autocast (engine/autocast.h): off | bfloat16 | float16 | auto; the model's losses() runs under
// it, the backward pass and the optimiser step in the parameters' float32.
//
// Reproducibility: training seeds LibTorch's default generator with `seed` before the model is
// built, and the data source shuffles with (seed, epoch). With the same config, seed and thread
// count the losses are identical from run to run: LibTorch's CPU kernels (convolutions included)
// split work statically over the intra-op threads, so their reductions do not depend on
// scheduling. A schedule keyed to wall-clock time (by_time) is the exception: its lr depends on
// how fast the machine runs.
//
// Data-parallel processes (distributed/process_group.h): every rank runs the same runner; after
// each forward one small all-reduce averages the logged scalars over the ranks, counts the
// images of every rank and makes the ranks agree on stopping (a stop request or the time budget
// on any rank stops all of them after the same iteration); the time-keyed schedule reads the mean
// training time. Only rank 0 writes (train.log, log.jsonl, stderr; the CLI gives the other ranks
// no work_dir).
#pragma once

#include <torch/optim/optimizer.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "setdet/engine/autocast.h"
#include "setdet/engine/batch_source.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/engine/evaluator.h"
#include "setdet/engine/hooks.h"
#include "setdet/engine/lr_schedule.h"
#include "setdet/models/detector.h"

namespace setdet {

struct RunnerOptions {
  int64_t max_epochs = 0;
  int64_t max_iters = 0;
  double max_seconds = 0.0;
  uint64_t seed = 0;
  int64_t log_interval = 50;                // iterations
  int64_t eval_interval = 1;                // epochs; 0: only at the end
  int64_t checkpoint_interval = 1;          // epochs; 0: only latest.pt at the end
  std::string work_dir;                     // "": write no files
  std::optional<c10::ScalarType> autocast;  // losses() under autocast to this dtype
  // A non-finite loss stops training ("stop"), or ("skip") its batch is skipped without an
  // optimiser step, at most `nonfinite_max_skips` times in a run; the next one stops training.
  std::string nonfinite = "stop";
  int64_t nonfinite_max_skips = 10;

  // Reads the `runner` section (absent: defaults; at least one limit must then be set later).
  static RunnerOptions from_config(const std::optional<Config>& cfg);
};

// Mean of each logged scalar since the last clear(), in first-logged order.
class LogBuffer {
 public:
  void update(const std::string& key, double value);
  std::vector<std::pair<std::string, double>> averages() const;
  double last(const std::string& key, double fallback = 0.0) const;
  bool empty() const { return order_.empty(); }
  void clear();

 private:
  std::vector<std::string> order_;
  std::map<std::string, std::pair<double, int64_t>> sums_;
  std::map<std::string, double> last_;
};

class Runner {
 public:
  using Clock = std::function<double()>;  // monotonic seconds

  Runner(std::shared_ptr<DetectorModel> model, std::shared_ptr<torch::optim::Optimizer> optimizer,
         std::shared_ptr<LrSchedule> schedule, RunnerOptions options);

  // Inserted after every hook of lower or equal priority value (MMCV's order).
  void register_hook(std::shared_ptr<Hook> hook);
  void set_val_data(EvalData data) { val_ = std::move(data); }
  void set_clock(Clock clock) { clock_ = std::move(clock); }
  void set_meta(CheckpointMeta meta) { meta_ = std::move(meta); }

  // Restores model, optimiser, training position and RNG state from a checkpoint.
  void resume(const std::string& checkpoint);
  // Trains until max_epochs / max_iters / max_seconds or request_stop(); then writes
  // work_dir/metrics.json (if work_dir is set). Each iteration logs "loss" (the sum), every
  // scalar entry of losses() and "forward_time" (seconds in losses()).
  void train(BatchSource& data);
  // Thread- and signal-safe: training stops after the current iteration (hooks still run
  // their end-of-training work, so latest.pt is saved).
  void request_stop() { stop_requested_ = true; }
  // One evaluation pass (val hooks called); returns and stores the COCO stats.
  std::map<std::string, double> validate();
  void save_checkpoint(const std::string& path);
  // The checkpoint most recently written (or resumed from) and its iteration; "" if none.
  const std::string& last_checkpoint() const { return last_checkpoint_; }
  int64_t last_checkpoint_iter() const { return last_checkpoint_iter_; }
  // "the last good checkpoint is <path> (iteration N)", or that there is none.
  std::string last_checkpoint_text() const;

  // ---- state for hooks ----
  DetectorModel& model() { return *model_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const LrSchedule& schedule() const { return *schedule_; }
  const RunnerOptions& options() const { return options_; }
  const std::vector<std::shared_ptr<Hook>>& hooks() const { return hooks_; }
  const TrainState& state() const { return state_; }
  // In before_train_iter: iterations before this one; in after_train_iter: including it.
  int64_t iter() const { return state_.iter; }
  int64_t epoch() const { return state_.epoch; }
  int64_t iters_per_epoch() const { return iters_per_epoch_; }
  TrainProgress progress() const;
  bool epoch_complete() const { return epoch_complete_; }
  bool finished() const { return finished_; }
  bool has_val_data() const { return val_.source != nullptr; }

  const Batch& batch() const { return batch_; }
  const std::map<std::string, at::Tensor>& outputs() const { return outputs_; }
  const at::Tensor& loss() const { return loss_; }  // sum of outputs whose name starts "loss"
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  std::vector<double> current_lrs() const;

  LogBuffer& log_buffer() { return log_buffer_; }
  std::map<std::string, double>& metrics() { return metrics_; }
  const std::string& last_eval_summary() const { return last_eval_summary_; }

  double now() const { return clock_(); }
  double elapsed() const;  // training seconds (validation and checkpoint writes excluded)
  void pause_timer();
  void resume_timer();
  // Writes a line to stderr and work_dir/train.log.
  void log(const std::string& line);
  void append_jsonl(const std::string& json_object);
  std::string work_path(const std::string& name) const;

 private:
  void call(void (Hook::*stage)(Runner&));
  bool limit_reached() const;
  // Logs this iteration's scalars (averaged over the ranks) and advances the position.
  void record_iteration(double forward_seconds);
  // Records the data's global batch size; a resumed position saved with another is converted.
  void adopt_global_batch_size(int64_t size);
  void write_metrics();

  std::shared_ptr<DetectorModel> model_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<LrSchedule> schedule_;
  RunnerOptions options_;
  std::vector<std::shared_ptr<Hook>> hooks_;
  Clock clock_;
  EvalData val_;
  CheckpointMeta meta_;
  std::string last_checkpoint_;
  int64_t last_checkpoint_iter_ = 0;

  TrainState state_;
  std::vector<double> base_lrs_;
  int64_t iters_per_epoch_ = 0;
  bool epoch_complete_ = false;
  bool finished_ = false;
  std::atomic<bool> stop_requested_{false};

  double elapsed_base_ = 0.0;
  double running_since_ = -1.0;  // < 0: timer paused
  // data-parallel: the ranks' agreed stop decision and mean training time (< 0: one process)
  bool agreed_stop_ = false;
  double agreed_elapsed_ = -1.0;

  Batch batch_;
  std::map<std::string, at::Tensor> outputs_;
  at::Tensor loss_;
  LogBuffer log_buffer_;
  std::map<std::string, double> metrics_;
  std::string last_eval_summary_;
  double eval_seconds_total_ = 0.0;
  int64_t eval_images_ = 0;
  std::ofstream log_file_;
  std::ofstream jsonl_file_;
};

}  // namespace setdet
