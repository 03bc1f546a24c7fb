#include "setdet/engine/optim.h"

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/instancenorm.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <map>
#include <set>

#include "setdet/layers/sync_batch_norm.h"

namespace setdet {
namespace {

bool is_norm_layer(const torch::nn::Module& m) {
  return dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&m) ||
         dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) ||
         dynamic_cast<const torch::nn::BatchNorm3dImpl*>(&m) ||
         dynamic_cast<const SyncBatchNormImpl*>(&m) ||
         dynamic_cast<const torch::nn::GroupNormImpl*>(&m) ||
         dynamic_cast<const torch::nn::LayerNormImpl*>(&m) ||
         dynamic_cast<const torch::nn::InstanceNorm1dImpl*>(&m) ||
         dynamic_cast<const torch::nn::InstanceNorm2dImpl*>(&m) ||
         dynamic_cast<const torch::nn::InstanceNorm3dImpl*>(&m);
}

const std::vector<std::string> kParamwiseKeys{"norm_decay_mult", "bias_decay_mult", "custom_keys"};

// options(lr_mult, weight_decay) -> the group's optimiser options
std::vector<torch::optim::OptimizerParamGroup> to_torch_groups(
    const std::vector<ParamGroup>& groups,
    const std::function<std::unique_ptr<torch::optim::OptimizerOptions>(double, double)>& options) {
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (const auto& g : groups) out.emplace_back(g.params, options(g.lr_mult, g.weight_decay));
  return out;
}

double positive(const Config& cfg, const std::string& key, double fallback) {
  const double v = cfg.get<double>(key, fallback);
  SETDET_CHECK(v > 0, cfg.where(), ".", key, ": expected > 0, got ", v);
  return v;
}

double non_negative(const Config& cfg, const std::string& key, double fallback) {
  const double v = cfg.get<double>(key, fallback);
  SETDET_CHECK(v >= 0, cfg.where(), ".", key, ": expected >= 0, got ", v);
  return v;
}

SETDET_REGISTER(OptimizerRegistry, "SGD", [](const Config& cfg) {
  cfg.check_keys({"lr", "momentum", "weight_decay", "nesterov", "dampening", "paramwise"});
  const double lr = positive(cfg, "lr", 0.01);
  const double momentum = non_negative(cfg, "momentum", 0.9);
  const double dampening = non_negative(cfg, "dampening", 0.0);
  const bool nesterov = cfg.get<bool>("nesterov", false);
  SETDET_CHECK(!nesterov || (momentum > 0 && dampening == 0), cfg.where(),
               ".nesterov: needs momentum > 0 and dampening 0");
  return OptimizerFactory([=](const std::vector<ParamGroup>& groups) {
    auto make = [&](double lr_mult, double wd) {
      return std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(lr * lr_mult)
                                                            .momentum(momentum)
                                                            .dampening(dampening)
                                                            .weight_decay(wd)
                                                            .nesterov(nesterov));
    };
    return std::shared_ptr<torch::optim::Optimizer>(
        std::make_shared<torch::optim::SGD>(to_torch_groups(groups, make), *make(1.0, 0.0)));
  });
});

SETDET_REGISTER(OptimizerRegistry, "AdamW", [](const Config& cfg) {
  cfg.check_keys({"lr", "weight_decay", "betas", "eps", "amsgrad", "paramwise"});
  const double lr = positive(cfg, "lr", 1e-3);
  const auto betas = cfg.get<std::vector<double>>("betas", {0.9, 0.999});
  SETDET_CHECK(betas.size() == 2 && betas[0] >= 0 && betas[0] < 1 && betas[1] >= 0 && betas[1] < 1,
               cfg.where(), ".betas: expected two values in [0, 1), got ",
               cfg.has("betas") ? cfg["betas"].dump() : std::string("?"));
  const double eps = positive(cfg, "eps", 1e-8);
  const bool amsgrad = cfg.get<bool>("amsgrad", false);
  return OptimizerFactory([=](const std::vector<ParamGroup>& groups) {
    auto make = [&](double lr_mult, double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(lr * lr_mult)
              .betas(std::make_tuple(betas[0], betas[1]))
              .eps(eps)
              .weight_decay(wd)
              .amsgrad(amsgrad));
    };
    return std::shared_ptr<torch::optim::Optimizer>(
        std::make_shared<torch::optim::AdamW>(to_torch_groups(groups, make), *make(1.0, 0.0)));
  });
});

}  // namespace

std::vector<ParamGroup> make_param_groups(torch::nn::Module& model, double weight_decay,
                                          double norm_decay_mult, double bias_decay_mult,
                                          const std::vector<CustomKeyMult>& custom_keys) {
  // MMCV: sorted(sorted(keys), key=len, reverse=True)
  std::vector<CustomKeyMult> keys = custom_keys;
  std::stable_sort(keys.begin(), keys.end(),
                   [](const CustomKeyMult& a, const CustomKeyMult& b) { return a.key < b.key; });
  std::stable_sort(keys.begin(), keys.end(), [](const CustomKeyMult& a, const CustomKeyMult& b) {
    return a.key.size() > b.key.size();
  });
  std::set<std::string> norm_params;
  if (is_norm_layer(model)) {
    for (const auto& p : model.named_parameters(/*recurse=*/false)) norm_params.insert(p.key());
  }
  // include_self=false: the root may live on the stack (named_modules would need a shared_ptr).
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (!is_norm_layer(*item.value())) continue;
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      norm_params.insert(item.key() + "." + p.key());
    }
  }
  std::vector<ParamGroup> groups;
  std::map<std::pair<double, double>, size_t> by_mults;  // (lr_mult, decay) -> group
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    const std::string& name = item.key();
    const bool is_bias =
        name == "bias" || (name.size() > 5 && name.substr(name.size() - 5) == ".bias");
    double decay = weight_decay;
    double lr_mult = 1.0;
    const auto custom = std::find_if(keys.begin(), keys.end(), [&](const CustomKeyMult& k) {
      return name.find(k.key) != std::string::npos;
    });
    if (custom != keys.end()) {
      lr_mult = custom->lr_mult;
      decay *= custom->decay_mult;
    } else if (norm_params.count(name)) {
      decay *= norm_decay_mult;
    } else if (is_bias) {
      decay *= bias_decay_mult;
    }
    auto it = by_mults.find({lr_mult, decay});
    if (it == by_mults.end()) {
      it = by_mults.emplace(std::make_pair(lr_mult, decay), groups.size()).first;
      groups.push_back({{}, {}, decay, lr_mult});
    }
    groups[it->second].names.push_back(name);
    groups[it->second].params.push_back(item.value());
  }
  return groups;
}

std::shared_ptr<torch::optim::Optimizer> build_optimizer(const Config& cfg,
                                                         torch::nn::Module& model) {
  const OptimizerFactory factory = OptimizerRegistry().build(cfg);
  double norm_mult = 1.0, bias_mult = 1.0;
  std::vector<CustomKeyMult> custom_keys;
  if (auto paramwise = cfg.find("paramwise")) {
    paramwise->check_keys(kParamwiseKeys);
    norm_mult = non_negative(*paramwise, "norm_decay_mult", 1.0);
    bias_mult = non_negative(*paramwise, "bias_decay_mult", 1.0);
    if (auto keys = paramwise->find("custom_keys")) {
      SETDET_CHECK(keys->is_map(), keys->where(),
                   ": expected a map {name substring: {lr_mult, decay_mult}}, got '", keys->dump(),
                   "'");
      for (const auto& key : keys->keys()) {
        const Config k = (*keys)[key];
        SETDET_CHECK(k.is_map(), k.where(), ": expected {lr_mult: X, decay_mult: Y}, got '",
                     k.dump(), "'");
        k.check_keys({"lr_mult", "decay_mult"});
        custom_keys.push_back(
            {key, non_negative(k, "lr_mult", 1.0), non_negative(k, "decay_mult", 1.0)});
      }
    }
  }
  const double weight_decay = non_negative(cfg, "weight_decay", 0.0);
  auto groups = make_param_groups(model, weight_decay, norm_mult, bias_mult, custom_keys);
  SETDET_CHECK(!groups.empty(), cfg.where(), ": the model has no trainable parameters");
  return factory(groups);
}

std::vector<double> group_lrs(const torch::optim::Optimizer& optimizer) {
  std::vector<double> out;
  for (const auto& g : optimizer.param_groups()) out.push_back(g.options().get_lr());
  return out;
}

std::vector<double> group_weight_decays(const torch::optim::Optimizer& optimizer) {
  std::vector<double> out;
  for (const auto& g : optimizer.param_groups()) {
    if (auto* sgd = dynamic_cast<const torch::optim::SGDOptions*>(&g.options())) {
      out.push_back(sgd->weight_decay());
    } else if (auto* adamw = dynamic_cast<const torch::optim::AdamWOptions*>(&g.options())) {
      out.push_back(adamw->weight_decay());
    } else {
      out.push_back(0.0);
    }
  }
  return out;
}

void set_group_lrs(torch::optim::Optimizer& optimizer, const std::vector<double>& lrs) {
  auto& groups = optimizer.param_groups();
  TORCH_INTERNAL_ASSERT(groups.size() == lrs.size());
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(lrs[i]);
}

}  // namespace setdet
