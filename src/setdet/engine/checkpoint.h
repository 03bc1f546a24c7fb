// Training checkpoints: model parameters and buffers, optimiser state, the training position
// (which is also the learning-rate schedule's state), the data sampler seed and LibTorch's
// default CPU generator state. Written with torch::serialize::OutputArchive into memory and then
// to disk atomically (temp file + rename), so a crash never leaves a partial checkpoint.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace setdet {

// Where training stands; restoring it (with the RNG state and the sampler seed) continues the
// run exactly where it was saved.
struct TrainState {
  int64_t iter = 0;              // iterations completed
  int64_t epoch = 0;             // epoch to run next (or the one in progress)
  int64_t iter_in_epoch = 0;     // batches of `epoch` already consumed
  double elapsed_seconds = 0.0;  // training time so far (the time-keyed schedule's clock)
  int64_t images_seen = 0;
  uint64_t seed = 0;  // data sampler seed: epoch e shuffles with (seed, e)
  // Images per iteration over every data-parallel process (batch_size x world size), the unit
  // of iter_in_epoch; 0: unknown (checkpoints written before it was recorded).
  int64_t global_batch_size = 0;
};

struct CheckpointMeta {
  std::string optimizer_type;  // "AdamW", "SGD": resuming into another type is an error
  std::string config_yaml;     // the resolved config the run used
};

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state,
                     const CheckpointMeta& meta);

struct LoadedCheckpoint {
  TrainState state;
  CheckpointMeta meta;
};

// Loads the model (every parameter and buffer must be present with the same shape and dtype),
// and, when `optimizer` is given, its state (the checkpoint's optimizer_type must equal
// `optimizer_type`). restore_rng: set LibTorch's default CPU generator to the saved state.
// Errors name the file and the offending entry.
// The model parameters and buffers stored in the setdet checkpoint `path`, by name (parameters
// first, each group in stored order), as CPU tensors.
std::vector<std::pair<std::string, at::Tensor>> checkpoint_model_tensors(const std::string& path);

LoadedCheckpoint load_checkpoint(const std::string& path, torch::nn::Module& model,
                                 torch::optim::Optimizer* optimizer = nullptr,
                                 const std::string& optimizer_type = "", bool restore_rng = false);

}  // namespace setdet
