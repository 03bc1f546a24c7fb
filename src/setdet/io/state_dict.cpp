#include "setdet/io/state_dict.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <unordered_map>

#include "setdet/core/error.h"

namespace setdet {
namespace {

constexpr size_t kListed = 10;  // names listed per kind of mismatch in an error

std::regex compile(const Config& node) {
  const std::string text = node.as<std::string>();
  try {
    return std::regex(text, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw Error(node.where() + ": invalid regular expression '" + text + "' (" + e.what() + ")");
  }
}

std::vector<CheckpointImportRules::Pattern> patterns(const Config& node) {
  SETDET_CHECK(node.is_sequence(), node.where(), ": expected a list of regular expressions, got '",
               node.dump(), "'");
  std::vector<CheckpointImportRules::Pattern> out;
  for (size_t i = 0; i < node.size(); ++i) {
    const Config item = node.at(i);
    out.push_back({item.as<std::string>(), compile(item)});
  }
  return out;
}

bool matches_any(const std::vector<CheckpointImportRules::Pattern>& ps, const std::string& name) {
  for (const auto& p : ps) {
    if (std::regex_match(name, p.re)) return true;
  }
  return false;
}

std::string listed(const std::vector<std::string>& items) {
  std::string out;
  for (size_t k = 0; k < items.size() && k < kListed; ++k) out += (k ? ", " : "") + items[k];
  if (items.size() > kListed) out += fmt::format(", ... ({} more)", items.size() - kListed);
  return out;
}

std::string shape_string(at::IntArrayRef sizes) { return c10::str(sizes); }

}  // namespace

std::regex config_regex(const Config& node) { return compile(node); }

CheckpointImportRules CheckpointImportRules::from_config(const Config& cfg) {
  CheckpointImportRules rules;
  const auto node = cfg.find("checkpoint_import");
  if (!node) return rules;
  SETDET_CHECK(node->is_map(), node->where(),
               ": expected a map with rename / ignore_missing / ignore_unexpected, got '",
               node->dump(), "'");
  node->check_keys({"rename", "ignore_missing", "ignore_unexpected"});
  SETDET_CHECK(!node->has("type"), node->where(), ": unknown key 'type'");
  if (const auto rename = node->find("rename")) {
    SETDET_CHECK(rename->is_sequence(), rename->where(),
                 ": expected a list of {from: REGEX, to: REPLACEMENT}, got '", rename->dump(), "'");
    for (size_t i = 0; i < rename->size(); ++i) {
      const Config rule = rename->at(i);
      SETDET_CHECK(rule.is_map(), rule.where(), ": expected {from: REGEX, to: REPLACEMENT}, got '",
                   rule.dump(), "'");
      rule.check_keys({"from", "to"});
      SETDET_CHECK(!rule.has("type"), rule.where(), ": unknown key 'type'");
      rules.rename.push_back(
          {rule["from"].as<std::string>(), compile(rule["from"]), rule["to"].as<std::string>()});
    }
  }
  if (const auto p = node->find("ignore_missing")) rules.ignore_missing = patterns(*p);
  if (const auto p = node->find("ignore_unexpected")) rules.ignore_unexpected = patterns(*p);
  return rules;
}

std::string CheckpointImportRules::renamed(const std::string& name) const {
  std::string out = name;
  for (const auto& r : rename) out = std::regex_replace(out, r.from, r.to);
  return out;
}

ImportReport import_state_dict(const std::string& origin, const NamedTensors& tensors,
                               torch::nn::Module& model, const CheckpointImportRules& rules) {
  ImportReport report;
  // Renamed file names -> position in `tensors`.
  std::unordered_map<std::string, size_t> by_name;
  std::vector<std::string> names(tensors.size());
  std::vector<std::string> collisions;
  for (size_t k = 0; k < tensors.size(); ++k) {
    names[k] = rules.renamed(tensors[k].first);
    auto [it, inserted] = by_name.emplace(names[k], k);
    if (!inserted) {
      collisions.push_back("'" + tensors[it->second].first + "' and '" + tensors[k].first +
                           "' both become '" + names[k] + "'");
    }
  }
  SETDET_CHECK(collisions.empty(), origin, ": after checkpoint_import.rename, ", collisions.size(),
               " names collide: ", listed(collisions));

  std::vector<std::pair<at::Tensor, size_t>> copies;  // model tensor, position in `tensors`
  std::vector<std::string> missing, mismatched;
  std::vector<bool> used(tensors.size(), false);
  auto visit = [&](const std::string& name, const at::Tensor& target) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      if (matches_any(rules.ignore_missing, name)) {
        report.ignored_missing.push_back(name);
      } else {
        missing.push_back(name);
      }
      return;
    }
    used[it->second] = true;
    const at::Tensor& source = tensors[it->second].second;
    if (source.sizes() != target.sizes()) {
      const std::string& file_name = tensors[it->second].first;
      mismatched.push_back(name + (file_name == name ? "" : " (file: " + file_name + ")") +
                           " file " + shape_string(source.sizes()) + " vs model " +
                           shape_string(target.sizes()));
      return;
    }
    copies.emplace_back(target, it->second);
  };
  for (const auto& p : model.named_parameters(/*recurse=*/true)) visit(p.key(), p.value());
  for (const auto& b : model.named_buffers(/*recurse=*/true)) visit(b.key(), b.value());

  std::vector<std::string> unexpected;
  for (size_t k = 0; k < tensors.size(); ++k) {
    if (used[k]) continue;
    if (matches_any(rules.ignore_unexpected, names[k])) {
      report.ignored_unexpected.push_back(names[k]);
    } else {
      unexpected.push_back(
          names[k] == tensors[k].first ? names[k] : names[k] + " (file: " + tensors[k].first + ")");
    }
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = origin + ": the weights do not fit the model:";
    if (!missing.empty()) {
      msg += fmt::format(" {} missing (in the model, not in the file): {};", missing.size(),
                         listed(missing));
    }
    if (!unexpected.empty()) {
      msg += fmt::format(" {} unexpected (in the file, not in the model): {};", unexpected.size(),
                         listed(unexpected));
    }
    if (!mismatched.empty()) {
      msg += fmt::format(" {} with another shape: {};", mismatched.size(), listed(mismatched));
    }
    msg +=
        " (map names with the config's checkpoint_import: rename / ignore_missing / "
        "ignore_unexpected)";
    throw Error(msg);
  }

  torch::NoGradGuard no_grad;
  for (auto& [target, k] : copies) {
    target.copy_(tensors[k].second.to(target.scalar_type()));
  }
  report.loaded = copies.size();
  return report;
}

std::string LoadedWeights::describe() const {
  if (checkpoint) return fmt::format("checkpoint at iteration {}", checkpoint->state.iter);
  if (imported) {
    return fmt::format("imported from a torch.save state_dict: {} tensors", imported->loaded);
  }
  return "no weights";
}

LoadedWeights load_model_weights(const std::string& path, torch::nn::Module& model,
                                 const Config& cfg) {
  const CheckpointImportRules rules = CheckpointImportRules::from_config(cfg);
  LoadedWeights out;
  if (is_torchscript_archive(path)) {
    out.checkpoint = load_checkpoint(path, model);
    return out;
  }
  out.imported = import_state_dict(path, load_pth_state_dict(path), model, rules);
  return out;
}

ImportReport load_initial_weights(const std::string& path, torch::nn::Module& model,
                                  const Config& cfg) {
  const CheckpointImportRules rules = CheckpointImportRules::from_config(cfg);
  return import_state_dict(
      path,
      is_torchscript_archive(path) ? checkpoint_model_tensors(path) : load_pth_state_dict(path),
      model, rules);
}

}  // namespace setdet
