#include "setdet/engine/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <filesystem>
#include <mutex>
#include <sstream>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/io/pth.h"

namespace setdet {
namespace {

constexpr const char* kFormat = "setdet-checkpoint-1";

at::Tensor scalar_i64(int64_t v) { return at::scalar_tensor(v, at::kLong); }
at::Tensor scalar_f64(double v) { return at::scalar_tensor(v, at::kDouble); }

int64_t read_i64(torch::serialize::InputArchive& a, const std::string& key) {
  at::Tensor t;
  a.read(key, t);
  return t.item<int64_t>();
}

double read_f64(torch::serialize::InputArchive& a, const std::string& key) {
  at::Tensor t;
  a.read(key, t);
  return t.item<double>();
}

std::string read_string(torch::serialize::InputArchive& a, const std::string& key) {
  c10::IValue v;
  a.read(key, v);
  return v.toStringRef();
}

at::Generator default_cpu_generator() { return at::detail::getDefaultCPUGenerator(); }

}  // namespace

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state,
                     const CheckpointMeta& meta) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kFormat)));
  archive.write("meta/optimizer_type", c10::IValue(meta.optimizer_type));
  archive.write("meta/config", c10::IValue(meta.config_yaml));

  // Flat entries "model/params/<name>" and "model/buffers/<name>" (names as in
  // named_parameters()), so loading can check every entry's shape by name.
  torch::serialize::OutputArchive params(archive.compilation_unit());
  for (const auto& p : model.named_parameters(/*recurse=*/true)) {
    params.write(p.key(), p.value().detach());
  }
  archive.write("model/params", params);
  torch::serialize::OutputArchive buffers(archive.compilation_unit());
  for (const auto& b : model.named_buffers(/*recurse=*/true)) {
    buffers.write(b.key(), b.value().detach(), /*is_buffer=*/true);
  }
  archive.write("model/buffers", buffers);

  if (optimizer != nullptr) {
    torch::serialize::OutputArchive optim(archive.compilation_unit());
    optimizer->save(optim);
    archive.write("optimizer", optim);
  }

  archive.write("state/iter", scalar_i64(state.iter));
  archive.write("state/epoch", scalar_i64(state.epoch));
  archive.write("state/iter_in_epoch", scalar_i64(state.iter_in_epoch));
  archive.write("state/elapsed_seconds", scalar_f64(state.elapsed_seconds));
  archive.write("state/images_seen", scalar_i64(state.images_seen));
  archive.write("state/seed", scalar_i64(static_cast<int64_t>(state.seed)));
  archive.write("state/global_batch_size", scalar_i64(state.global_batch_size));
  {
    auto gen = default_cpu_generator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("rng/torch_cpu", gen.get_state());
  }

  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
}

namespace {

// Opens a setdet checkpoint after setdet's own checks of the archive (CRC-32s, pickles: LibTorch
// checks neither) and its format tag; errors name the file.
void open_checkpoint(const std::string& path, torch::serialize::InputArchive& archive) {
  SETDET_CHECK(std::filesystem::is_regular_file(path), "checkpoint not found: ", path);
  check_torchscript_archive(path);
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw Error(path + ": not a readable checkpoint (" + e.what_without_backtrace() + ")");
  }
  c10::IValue format;
  SETDET_CHECK(
      archive.try_read("format", format) && format.isString() && format.toStringRef() == kFormat,
      path, ": not a setdet checkpoint (expected format '", kFormat, "')");
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> checkpoint_model_tensors(const std::string& path) {
  torch::serialize::InputArchive archive;
  open_checkpoint(path, archive);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [group, is_buffer] : {std::pair<const char*, bool>{"model/params", false},
                                         std::pair<const char*, bool>{"model/buffers", true}}) {
    torch::serialize::InputArchive sub;
    archive.read(group, sub);
    for (const auto& key : sub.keys()) {
      at::Tensor t;
      SETDET_CHECK(sub.try_read(key, t, is_buffer), path, ": cannot read model entry '", key, "'");
      out.emplace_back(key, t);
    }
  }
  return out;
}

LoadedCheckpoint load_checkpoint(const std::string& path, torch::nn::Module& model,
                                 torch::optim::Optimizer* optimizer,
                                 const std::string& optimizer_type, bool restore_rng) {
  torch::serialize::InputArchive archive;
  open_checkpoint(path, archive);

  LoadedCheckpoint out;
  out.meta.optimizer_type = read_string(archive, "meta/optimizer_type");
  out.meta.config_yaml = read_string(archive, "meta/config");

  torch::serialize::InputArchive params, buffers;
  archive.read("model/params", params);
  archive.read("model/buffers", buffers);
  auto restore = [&](torch::serialize::InputArchive& from, const std::string& name,
                     at::Tensor& into, bool is_buffer) {
    at::Tensor saved;
    SETDET_CHECK(from.try_read(name, saved, is_buffer), path, ": model ",
                 is_buffer ? "buffer" : "parameter", " '", name, "' is missing");
    SETDET_CHECK(saved.sizes() == into.sizes() && saved.dtype() == into.dtype(), path,
                 ": model entry '", name, "' has shape ", saved.sizes(), " ", saved.dtype(),
                 ", the model expects ", into.sizes(), " ", into.dtype());
    torch::NoGradGuard no_grad;
    into.copy_(saved);
  };
  size_t n_params = 0, n_buffers = 0;
  for (auto& p : model.named_parameters(/*recurse=*/true)) {
    restore(params, p.key(), p.value(), false);
    ++n_params;
  }
  for (auto& b : model.named_buffers(/*recurse=*/true)) {
    restore(buffers, b.key(), b.value(), true);
    ++n_buffers;
  }
  SETDET_CHECK(params.keys().size() == n_params && buffers.keys().size() == n_buffers, path,
               ": the checkpoint holds ", params.keys().size(), " parameters and ",
               buffers.keys().size(), " buffers, the model has ", n_params, " and ", n_buffers,
               " (a different architecture?)");

  if (optimizer != nullptr) {
    SETDET_CHECK(out.meta.optimizer_type == optimizer_type, path,
                 ": the checkpoint's optimizer is '", out.meta.optimizer_type,
                 "', the config asks for '", optimizer_type, "'");
    torch::serialize::InputArchive optim;
    SETDET_CHECK(archive.try_read("optimizer", optim), path, ": no optimizer state saved");
    try {
      optimizer->load(optim);
    } catch (const c10::Error& e) {
      throw Error(path + ": optimizer state does not fit the optimizer (" +
                  e.what_without_backtrace() + ")");
    }
  }

  out.state.iter = read_i64(archive, "state/iter");
  out.state.epoch = read_i64(archive, "state/epoch");
  out.state.iter_in_epoch = read_i64(archive, "state/iter_in_epoch");
  out.state.elapsed_seconds = read_f64(archive, "state/elapsed_seconds");
  out.state.images_seen = read_i64(archive, "state/images_seen");
  out.state.seed = static_cast<uint64_t>(read_i64(archive, "state/seed"));
  if (at::Tensor t; archive.try_read("state/global_batch_size", t)) {
    out.state.global_batch_size = t.item<int64_t>();
  }
  if (restore_rng) {
    at::Tensor rng;
    archive.read("rng/torch_cpu", rng);
    auto gen = default_cpu_generator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
  }
  return out;
}

}  // namespace setdet
