// One registry per extension point (backbone, neck, head, assigner, loss, dataset, transform,
// hook, optimizer, lr schedule). Components register where they are defined:
//
//   SETDET_REGISTER(BackboneRegistry, "ResNet", [](const Config& cfg) { ... });
//
// build(cfg) reads cfg["type"] and calls the builder; an unknown type is an error naming the
// file, the key path and the known choices.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/core/error.h"

namespace setdet {

template <typename Product>
class Registry {
 public:
  using Builder = std::function<Product(const Config&)>;

  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  bool add(const std::string& type, Builder builder) {
    SETDET_CHECK(!builders_.count(type), kind_, " registry: type '", type, "' registered twice");
    builders_.emplace(type, std::move(builder));
    return true;
  }

  bool contains(const std::string& type) const { return builders_.count(type) > 0; }

  Product build(const Config& cfg) const {
    SETDET_CHECK(cfg.is_map() && cfg.has("type"), cfg.where(), ": a ", kind_,
                 " needs a 'type' key (known: ", known(), ")");
    const auto type = cfg["type"].as<std::string>();
    auto it = builders_.find(type);
    SETDET_CHECK(it != builders_.end(), cfg.where(), ".type: unknown ", kind_, " '", type,
                 "' (known: ", known(), ")");
    return it->second(cfg);
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : builders_) out.push_back(kv.first);
    return out;
  }

  std::string known() const {
    std::string s;
    for (const auto& kv : builders_) s += (s.empty() ? "" : ", ") + kv.first;
    return s.empty() ? "none registered" : s;
  }

  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  std::map<std::string, Builder> builders_;
};

// registry.build(parent[key]) when `parent` has `key`, else the component `default_yaml` describes
// (its errors name "<parent path>.<key> (default)").
template <typename Product>
Product build_or_default(const Registry<Product>& registry, const Config& parent,
                         const std::string& key, const std::string& default_yaml) {
  if (parent.has(key)) return registry.build(parent[key]);
  return registry.build(Config::parse(default_yaml, parent.where() + "." + key + " (default)"));
}

// Each registry is a function-local static, so registration from static initialisers in other
// translation units is safe:
//   Registry<std::shared_ptr<Transform>>& TransformRegistry();
#define SETDET_DEFINE_REGISTRY(name, product, kind)    \
  inline ::setdet::Registry<product>& name() {         \
    static ::setdet::Registry<product> registry(kind); \
    return registry;                                   \
  }

#define SETDET_REGISTER_CONCAT_(a, b) a##b
#define SETDET_REGISTER_CONCAT(a, b) SETDET_REGISTER_CONCAT_(a, b)
// Registers `builder` under `type` in the registry returned by `registry_fn()`.
#define SETDET_REGISTER(registry_fn, type, builder)                                            \
  static const bool SETDET_REGISTER_CONCAT(setdet_registered_, __COUNTER__) [[maybe_unused]] = \
      registry_fn().add(type, builder)

}  // namespace setdet
