// Optimisers built from the `optimizer` config node (torch::optim SGD with momentum, AdamW),
// with MMDetection-style per-parameter weight-decay multipliers:
//
//   optimizer: {type: AdamW, lr: 2.0e-3, weight_decay: 0.05, betas: [0.9, 0.999],
//               paramwise: {norm_decay_mult: 0.0, bias_decay_mult: 0.0}}
//   optimizer: {type: SGD, lr: 0.01, momentum: 0.9, weight_decay: 1.0e-4, nesterov: false}
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "setdet/config/registry.h"

namespace setdet {

// One group of trainable parameters sharing a weight decay.
struct ParamGroup {
  std::vector<std::string> names;  // as in Module::named_parameters()
  std::vector<at::Tensor> params;
  double weight_decay = 0.0;
};

// Splits the parameters of `model` that require grad into groups by effective weight decay:
// weight_decay * norm_decay_mult for parameters of normalisation layers (BatchNorm, GroupNorm,
// LayerNorm, InstanceNorm), weight_decay * bias_decay_mult for other parameters named "bias",
// weight_decay otherwise. Groups appear in the order of their first parameter, so the grouping
// is the same on every build of the same model (checkpoints rely on it).
std::vector<ParamGroup> make_param_groups(torch::nn::Module& model, double weight_decay,
                                          double norm_decay_mult, double bias_decay_mult);

// Builds the optimiser for already grouped parameters; `lr` is every group's base lr.
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
