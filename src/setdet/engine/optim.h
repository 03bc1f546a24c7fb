// Optimisers built from the `optimizer` config node (torch::optim SGD with momentum, AdamW),
// with MMDetection-style per-parameter learning-rate and weight-decay multipliers:
//
//   optimizer: {type: AdamW, lr: 2.0e-3, weight_decay: 0.05, betas: [0.9, 0.999],
//               paramwise: {norm_decay_mult: 0.0, bias_decay_mult: 0.0}}
//   optimizer: {type: SGD, lr: 0.01, momentum: 0.9, weight_decay: 1.0e-4, nesterov: false}
//   optimizer: {type: AdamW, lr: 2.0e-4, weight_decay: 1.0e-4,
//               paramwise: {custom_keys: {backbone.0: {lr_mult: 0.1},
//                                         sampling_offsets: {lr_mult: 0.1}}}}
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "setdet/config/registry.h"

namespace setdet {

// One group of trainable parameters sharing a learning-rate multiplier and a weight decay.
struct ParamGroup {
  std::vector<std::string> names;  // as in Module::named_parameters()
  std::vector<at::Tensor> params;
  double weight_decay = 0.0;
  double lr_mult = 1.0;  // the group's base lr = optimizer.lr * lr_mult
};

// paramwise.custom_keys (MMCV's DefaultOptimizerConstructor): a parameter whose name contains
// `key` gets lr * lr_mult and weight_decay * decay_mult, and no norm / bias multiplier.
struct CustomKeyMult {
  std::string key;
  double lr_mult = 1.0;
  double decay_mult = 1.0;
};

// Splits the parameters of `model` that require grad into groups by (lr multiplier, effective
// weight decay). A parameter whose name contains one of `custom_keys` takes the first such key in
// MMCV's order (longest key first, ties alphabetical) and its multipliers; otherwise
// weight_decay * norm_decay_mult for parameters of normalisation layers (BatchNorm, GroupNorm,
// LayerNorm, InstanceNorm), weight_decay * bias_decay_mult for other parameters named "bias",
// weight_decay otherwise. Groups appear in the order of their first parameter, so the grouping
// is the same on every build of the same model (checkpoints rely on it).
std::vector<ParamGroup> make_param_groups(torch::nn::Module& model, double weight_decay,
                                          double norm_decay_mult, double bias_decay_mult,
                                          const std::vector<CustomKeyMult>& custom_keys = {});

// Builds the optimiser for already grouped parameters; each group's lr is lr * its lr_mult.
using OptimizerFactory =
    std::function<std::shared_ptr<torch::optim::Optimizer>(const std::vector<ParamGroup>&)>;

// Builders read the optimiser's own keys (lr, weight_decay, momentum, ...) and return a factory.
SETDET_DEFINE_REGISTRY(OptimizerRegistry, OptimizerFactory, "optimizer")

// Builds the optimiser named by cfg.type over `model`'s trainable parameters (paramwise
// multipliers applied). Throws naming the key path on unknown types or keys.
std::shared_ptr<torch::optim::Optimizer> build_optimizer(const Config& cfg,
                                                         torch::nn::Module& model);

// Learning rate / weight decay of each parameter group as currently set.
std::vector<double> group_lrs(const torch::optim::Optimizer& optimizer);
std::vector<double> group_weight_decays(const torch::optim::Optimizer& optimizer);
void set_group_lrs(torch::optim::Optimizer& optimizer, const std::vector<double>& lrs);

}  // namespace setdet
