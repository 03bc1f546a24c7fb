// Loading model weights from either a setdet checkpoint or a PyTorch state_dict (`.pth` written by
// torch.save), with the name mapping of the config's optional top-level node
//
//   checkpoint_import:
//     rename:                      # applied in order to every name in the file, each with
//       - {from: '^module\.', to: ''}   # std::regex_replace (ECMAScript; '$1' in `to`)
//     ignore_missing: ['head\.scales\..*']      # model tensors the file may lack (kept as built)
//     ignore_unexpected: ['.*num_batches_tracked']  # file tensors (after renaming) to drop
//
// Patterns of ignore_missing / ignore_unexpected must match the whole name (std::regex_match).
#pragma once

#include <torch/nn/module.h>

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/io/pth.h"

namespace setdet {

// The regular expression (ECMAScript) a config node holds; an invalid one is an error naming the
// node.
std::regex config_regex(const Config& node);

struct CheckpointImportRules {
  struct Rename {
    std::string from_text;
    std::regex from;
    std::string to;
  };
  struct Pattern {
    std::string text;
    std::regex re;
  };
  std::vector<Rename> rename;
  std::vector<Pattern> ignore_missing;
  std::vector<Pattern> ignore_unexpected;

  // From `cfg`'s top-level `checkpoint_import` node (no rules when it is absent). Unknown keys and
  // invalid regexes are errors naming the key path.
  static CheckpointImportRules from_config(const Config& cfg);
  // `name` after every rename rule.
  std::string renamed(const std::string& name) const;
};

struct ImportReport {
  size_t loaded = 0;                            // model tensors set from the file
  std::vector<std::string> ignored_missing;     // model tensors kept as built (ignore_missing)
  std::vector<std::string> ignored_unexpected;  // file tensors dropped (ignore_unexpected)
};

// Copies `tensors` (renamed by `rules`) into `model`'s named_parameters() and named_buffers(),
// converted to each model tensor's dtype. Strict: a model tensor absent from the file, a file
// tensor the model lacks or a shape mismatch is an error naming `origin` and the tensors (the
// ignore_* rules excuse the first two); nothing is copied then.
ImportReport import_state_dict(const std::string& origin, const NamedTensors& tensors,
                               torch::nn::Module& model, const CheckpointImportRules& rules);

struct LoadedWeights {
  std::optional<LoadedCheckpoint> checkpoint;  // `path` was a setdet checkpoint
  std::optional<ImportReport> imported;        // `path` was a torch.save state_dict
  // "checkpoint at iteration 1200" or "imported from torch.save state_dict: 285 tensors".
  std::string describe() const;
};

// A setdet checkpoint (a TorchScript archive, see is_torchscript_archive) is loaded with
// load_checkpoint (model only); any other file is read as a torch.save `.pth` with
// load_pth_state_dict and imported with the rules of `cfg`'s `checkpoint_import` node.
LoadedWeights load_model_weights(const std::string& path, torch::nn::Module& model,
                                 const Config& cfg);

// Initial weights for training (MMDetection's load_from): the model tensors of a setdet
// checkpoint or a torch.save state_dict, imported with import_state_dict and the rules of `cfg`'s
// `checkpoint_import` node (e.g. ignore_missing for a head the checkpoint does not have yet).
ImportReport load_initial_weights(const std::string& path, torch::nn::Module& model,
                                  const Config& cfg);

}  // namespace setdet
