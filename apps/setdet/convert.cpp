// `setdet convert --config CFG [--set key=value ...] IN.pth OUT.pt`: imports a PyTorch state_dict
// (torch.save) into the detector of CFG, with CFG's checkpoint_import rules, and writes it as a
// setdet checkpoint (model only, meta.config = the resolved config).
//
// `setdet inspect-weights [FILE] [--config CFG] [--json OUT.json]`: lists tensors with their dtype,
// shape, CRC-32 of their little-endian bytes (as Python's zlib.crc32) and sum: those of FILE (a
// torch.save state_dict or a setdet checkpoint), or, with --config, the model of CFG after loading
// FILE when given. Meant for checking an import against PyTorch and for writing rename rules.
#include <fmt/format.h>
#include <torch/serialize/input-archive.h>
#include <yaml-cpp/yaml.h>

#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/engine/runner.h"
#include "setdet/io/pth.h"
#include "setdet/io/state_dict.h"
#include "setdet/models/detector.h"
#include "setdet/ops/tensor_args.h"

namespace setdet::cli {
namespace {

struct ConvertOptions {
  std::string config;
  std::vector<std::string> overrides;
  std::string in;
  std::string out;
};

Config load_config(const std::string& file, const std::vector<std::string>& overrides) {
  Config cfg = Config::load(file);
  for (const auto& s : overrides) cfg.set_override(s);
  return cfg;
}

std::string import_summary(const ImportReport& r) {
  std::string s = fmt::format("{} tensors imported", r.loaded);
  if (!r.ignored_missing.empty()) {
    s += fmt::format(", {} kept as built (ignore_missing)", r.ignored_missing.size());
  }
  if (!r.ignored_unexpected.empty()) {
    s += fmt::format(", {} dropped (ignore_unexpected)", r.ignored_unexpected.size());
  }
  return s;
}

int run_convert(const ConvertOptions& o) {
  const Config cfg = load_config(o.config, o.overrides);
  auto model = DetectorRegistry().build(cfg["model"]);
  const LoadedWeights loaded = load_model_weights(o.in, *model, cfg);
  YAML::Emitter yaml;
  yaml << cfg.node();
  CheckpointMeta meta;
  meta.config_yaml = std::string(yaml.c_str()) + "\n";
  save_checkpoint(o.out, *model, /*optimizer=*/nullptr, TrainState{}, meta);
  std::cout << fmt::format("{}: {} -> {}\n", o.in,
                           loaded.imported ? import_summary(*loaded.imported) : loaded.describe(),
                           o.out);
  return 0;
}

const RegisterCommand kConvert{
    "convert", "import a PyTorch state_dict (.pth from torch.save) into a setdet checkpoint",
    [](CLI::App& app) {
      auto o = std::make_shared<ConvertOptions>();
      app.add_option("--config", o->config,
                     "config YAML of the model (its checkpoint_import node maps the names)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      app.add_option("in", o->in, "state_dict written by torch.save (.pth)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("out", o->out, "setdet checkpoint to write (.pt)")->required();
      return [o] { return run_convert(*o); };
    }};

struct InspectOptions {
  std::string file;
  std::string config;
  std::vector<std::string> overrides;
  std::string json;
};

using ops::dtype_name;

// The model tensors of a setdet checkpoint, parameters first, as save_checkpoint wrote them.
NamedTensors checkpoint_tensors(const std::string& path) {
  check_torchscript_archive(path);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw Error(path + ": not a readable checkpoint (" + e.what_without_backtrace() + ")");
  }
  NamedTensors out;
  for (const bool is_buffer : {false, true}) {
    torch::serialize::InputArchive part;
    SETDET_CHECK(archive.try_read(is_buffer ? "model/buffers" : "model/params", part), path,
                 ": not a setdet checkpoint (no model/params or model/buffers)");
    for (const auto& name : part.keys()) {
      at::Tensor t;
      part.read(name, t, is_buffer);
      out.emplace_back(name, t);
    }
  }
  return out;
}

int run_inspect(const InspectOptions& o) {
  SETDET_CHECK(!o.file.empty() || !o.config.empty(),
               "inspect-weights: give a FILE, a --config, or both");
  NamedTensors tensors;
  if (!o.config.empty()) {
    const Config cfg = load_config(o.config, o.overrides);
    auto model = DetectorRegistry().build(cfg["model"]);
    if (!o.file.empty()) load_model_weights(o.file, *model, cfg);
    for (const auto& p : model->named_parameters(/*recurse=*/true)) {
      tensors.emplace_back(p.key(), p.value().detach());
    }
    for (const auto& b : model->named_buffers(/*recurse=*/true)) {
      tensors.emplace_back(b.key(), b.value());
    }
  } else if (is_torchscript_archive(o.file)) {
    tensors = checkpoint_tensors(o.file);
  } else {
    tensors = load_pth_state_dict(o.file);
  }

  std::ostringstream json;
  json << "[";
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& [name, t] = tensors[k];
    const std::string dtype = dtype_name(t.scalar_type());
    const std::string shape = c10::str(t.sizes());
    const uint32_t crc = tensor_crc32(t);
    const double sum =
        t.is_complex() ? at::real(t).sum().item<double>() : t.to(at::kDouble).sum().item<double>();
    std::cout << fmt::format("{}  {}  {}  crc32={:08x}  sum={}\n", name, dtype, shape, crc, sum);
    json << (k ? ",\n " : "") << "{\"name\": " << json_string(name) << ", \"dtype\": \"" << dtype
         << "\", \"shape\": [";
    for (int64_t d = 0; d < t.dim(); ++d) json << (d ? ", " : "") << t.size(d);
    json << "], \"crc32\": " << crc << ", \"sum\": " << json_number(sum) << "}";
  }
  json << "]\n";
  if (!o.json.empty()) write_file_atomic(o.json, json.str());
  return 0;
}

const RegisterCommand kInspect{
    "inspect-weights",
    "list the tensors of a .pth state_dict, a setdet checkpoint or a config's model",
    [](CLI::App& app) {
      auto o = std::make_shared<InspectOptions>();
      app.add_option("file", o->file, "torch.save state_dict (.pth) or setdet checkpoint (.pt)")
          ->check(CLI::ExistingFile);
      app.add_option("--config", o->config,
                     "list the model of this config instead (after loading FILE when given)")
          ->check(CLI::ExistingFile);
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      app.add_option("--json", o->json,
                     "also write [{name, dtype, shape, crc32, sum}, ...] as JSON");
      return [o] { return run_inspect(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
