#include "setdet/io/weight_transfer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <map>
#include <unordered_map>

#include "setdet/core/error.h"
#include "setdet/io/state_dict.h"

namespace setdet {
namespace {

std::vector<std::string> names_list(const Config& node) {
  SETDET_CHECK(node.is_sequence() && node.size() > 0, node.where(),
               ": expected a non-empty list of class names, got '", node.dump(), "'");
  std::vector<std::string> out;
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < node.size(); ++i) {
    out.push_back(node.at(i).as<std::string>());
    const auto [it, fresh] = seen.emplace(out.back(), i);
    SETDET_CHECK(fresh, node.at(i).where(), ": class '", out.back(), "' is listed twice (also at [",
                 it->second, "])");
  }
  return out;
}

int64_t index_of(const std::vector<std::string>& names, const std::string& name) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<int64_t>(i);
  }
  return -1;
}

std::string listed(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

struct ClassLayout {
  int64_t groups = 0;  // A
  int64_t slots = 0;   // C + background
};

// The class layout of dim 0 of `t` under `rule` for `classes` classes.
ClassLayout layout(const std::string& what, const std::string& name, const at::Tensor& t,
                   const ClassTensorRule& rule, int64_t classes) {
  SETDET_CHECK(t.dim() >= 1, what, ": class tensor '", name, "' is a scalar");
  ClassLayout l;
  l.slots = classes + (rule.background == ClassTensorRule::Background::kNone ? 0 : 1);
  const int64_t per_group = l.slots * rule.rows_per_class;
  SETDET_CHECK(
      t.size(0) % per_group == 0 && t.size(0) > 0, what, ": class tensor '", name, "' has ",
      t.size(0), " rows, not a multiple of ", per_group, " (", classes, " classes",
      rule.background == ClassTensorRule::Background::kNone ? "" : " + background",
      rule.rows_per_class > 1 ? " x " + std::to_string(rule.rows_per_class) + " rows" : "", ")");
  l.groups = t.size(0) / per_group;
  return l;
}

int64_t slot_of(int64_t c, const ClassTensorRule& rule) {
  return rule.background == ClassTensorRule::Background::kFirst ? c + 1 : c;
}

}  // namespace

WeightTransferPlan WeightTransferPlan::from_config(const Config& map) {
  map.check_keys({"target_config", "seed", "source_classes", "target_classes", "classes",
                  "class_tensors", "keep_initialised"});
  WeightTransferPlan plan;
  const std::vector<std::string> source = names_list(map["source_classes"]);
  const std::vector<std::string> target = names_list(map["target_classes"]);
  plan.source_classes = static_cast<int64_t>(source.size());
  plan.target_to_source.assign(target.size(), -1);
  if (const auto classes = map.find("classes")) {
    SETDET_CHECK(classes->is_map(), classes->where(),
                 ": expected a map target class -> source class, got '", classes->dump(), "'");
    for (const auto& t : classes->keys()) {
      const int64_t k = index_of(target, t);
      SETDET_CHECK(k >= 0, (*classes)[t].where(), ": '", t, "' is not a target class (",
                   listed(target), ")");
      const std::string s = (*classes)[t].as<std::string>();
      const int64_t g = index_of(source, s);
      SETDET_CHECK(g >= 0, (*classes)[t].where(), ": '", s, "' is not a source class (",
                   listed(source), ")");
      plan.target_to_source[static_cast<size_t>(k)] = g;
    }
  }
  const Config tensors = map["class_tensors"];
  SETDET_CHECK(tensors.is_sequence() && tensors.size() > 0, tensors.where(),
               ": expected a non-empty list of {name: REGEX, background: none|first|last, "
               "rows_per_class: N}, got '",
               tensors.dump(), "'");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Config rule = tensors.at(i);
    SETDET_CHECK(rule.is_map(), rule.where(), ": expected {name: REGEX, ...}, got '", rule.dump(),
                 "'");
    rule.check_keys({"name", "background", "rows_per_class"});
    ClassTensorRule r;
    r.name_text = rule["name"].as<std::string>();
    r.name = config_regex(rule["name"]);
    const std::string bg = rule.get<std::string>("background", "none");
    SETDET_CHECK(bg == "none" || bg == "first" || bg == "last", rule["background"].where(),
                 ": expected none, first or last, got '", bg, "'");
    r.background = bg == "first"  ? ClassTensorRule::Background::kFirst
                   : bg == "last" ? ClassTensorRule::Background::kLast
                                  : ClassTensorRule::Background::kNone;
    r.rows_per_class = rule.get<int64_t>("rows_per_class", 1);
    SETDET_CHECK(r.rows_per_class >= 1, rule["rows_per_class"].where(), ": expected >= 1, got ",
                 r.rows_per_class);
    plan.class_tensors.push_back(std::move(r));
  }
  if (const auto keep = map.find("keep_initialised")) {
    SETDET_CHECK(keep->is_sequence(), keep->where(),
                 ": expected a list of regular expressions, got '", keep->dump(), "'");
    for (size_t i = 0; i < keep->size(); ++i) {
      plan.keep_initialised_text.push_back(keep->at(i).as<std::string>());
      plan.keep_initialised.push_back(config_regex(keep->at(i)));
    }
  }
  return plan;
}

WeightTransferReport transfer_weights(const std::string& origin, const NamedTensors& source,
                                      torch::nn::Module& target, const WeightTransferPlan& plan) {
  const auto target_classes = static_cast<int64_t>(plan.target_to_source.size());
  SETDET_CHECK(target_classes > 0 && plan.source_classes > 0, origin,
               ": the transfer plan has no classes");
  for (size_t k = 0; k < plan.target_to_source.size(); ++k) {
    const int64_t g = plan.target_to_source[k];
    SETDET_CHECK(g >= -1 && g < plan.source_classes, origin, ": target class ", k,
                 " maps to source class ", g, ", outside -1..", plan.source_classes - 1);
  }
  std::unordered_map<std::string, at::Tensor> by_name;
  for (const auto& [name, t] : source) by_name.emplace(name, t);

  // First decide every tensor's fate (and check it), then write: errors leave `target` as it was.
  struct Action {
    at::Tensor dst;
    at::Tensor src;
    const ClassTensorRule* rule = nullptr;  // set: copy rows by the mapping
  };
  std::vector<Action> actions;
  WeightTransferReport report;
  const auto consider = [&](const std::string& name, const at::Tensor& dst) {
    for (const auto& re : plan.keep_initialised) {
      if (std::regex_match(name, re)) {
        report.initialised.push_back(name);
        return;
      }
    }
    const ClassTensorRule* rule = nullptr;
    for (const auto& r : plan.class_tensors) {
      if (std::regex_match(name, r.name)) {
        rule = &r;
        break;
      }
    }
    const auto it = by_name.find(name);
    if (it == by_name.end()) {
      SETDET_CHECK(rule == nullptr, origin, ": class tensor '", name, "' (rule '", rule->name_text,
                   "') is not in the source");
      report.initialised.push_back(name);
      return;
    }
    const at::Tensor& src = it->second;
    if (rule == nullptr) {
      SETDET_CHECK(src.sizes() == dst.sizes(), origin, ": tensor '", name, "' has shape ",
                   src.sizes(), " in the source and ", dst.sizes(),
                   " in the target (list it in class_tensors or keep_initialised)");
      actions.push_back({dst, src, nullptr});
      report.copied.push_back(name);
      return;
    }
    const ClassLayout ls = layout(origin + " (source)", name, src, *rule, plan.source_classes);
    const ClassLayout lt = layout("target model", name, dst, *rule, target_classes);
    SETDET_CHECK(ls.groups == lt.groups, origin, ": class tensor '", name, "' has ", ls.groups,
                 " groups of classes in the source and ", lt.groups, " in the target");
    SETDET_CHECK(src.sizes().slice(1) == dst.sizes().slice(1), origin, ": class tensor '", name,
                 "' has shape ", src.sizes(), " in the source and ", dst.sizes(),
                 " in the target: only dim 0 (classes) may differ");
    actions.push_back({dst, src, rule});
    report.class_rows.push_back(name);
  };
  for (const auto& p : target.named_parameters(/*recurse=*/true)) consider(p.key(), p.value());
  for (const auto& b : target.named_buffers(/*recurse=*/true)) consider(b.key(), b.value());

  torch::NoGradGuard no_grad;
  for (const Action& a : actions) {
    const at::Tensor src = a.src.to(a.dst.dtype());
    if (a.rule == nullptr) {
      a.dst.copy_(src);
      continue;
    }
    const ClassTensorRule& r = *a.rule;
    const ClassLayout ls = layout(origin, "", src, r, plan.source_classes);
    const ClassLayout lt = layout(origin, "", a.dst, r, target_classes);
    const int64_t R = r.rows_per_class;
    const auto copy_slot = [&](int64_t group, int64_t dst_slot, int64_t src_slot) {
      a.dst.narrow(0, (group * lt.slots + dst_slot) * R, R)
          .copy_(src.narrow(0, (group * ls.slots + src_slot) * R, R));
    };
    for (int64_t group = 0; group < lt.groups; ++group) {
      for (int64_t k = 0; k < target_classes; ++k) {
        const int64_t g = plan.target_to_source[static_cast<size_t>(k)];
        if (g >= 0) copy_slot(group, slot_of(k, r), slot_of(g, r));
      }
      if (r.background == ClassTensorRule::Background::kFirst) copy_slot(group, 0, 0);
      if (r.background == ClassTensorRule::Background::kLast) {
        copy_slot(group, target_classes, plan.source_classes);
      }
    }
  }
  for (int64_t g : plan.target_to_source) report.mapped_classes += g >= 0;
  return report;
}

}  // namespace setdet
