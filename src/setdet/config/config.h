// YAML configs in the MMDetection mould: `_base_` inheritance, `--set a.b.c=v` overrides, typed
// access whose errors name the file and the key path.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "setdet/core/error.h"

namespace setdet {

// "a map {a: 1}", "a list [1, 2]", "'text'", "null": what a node holds, for error messages.
std::string describe_node(const YAML::Node& node);

// A view of one node of a loaded config: the YAML node, the file it came from and its key path
// ("model.head"). Copies are cheap and share the underlying YAML.
class Config {
 public:
  Config() = default;
  Config(YAML::Node node, std::string file, std::string path = "");

  // Loads `file`; `_base_: other.yaml` (or a list) is loaded first, relative to `file`'s
  // directory, and this file's keys are merged over it recursively (maps merge, everything else
  // replaces). A key set to the string "_delete_" is removed; a map holding `_delete_: true`
  // replaces the inherited map instead of merging into it (MMCV's convention).
  static Config load(const std::string& file);
  // Parses YAML text (for tests and generated configs); `origin` names it in errors.
  static Config parse(const std::string& yaml, const std::string& origin = "<string>");

  // "model.head.num_convs=2": the value is parsed as YAML (numbers, lists "[1,2]", strings).
  // Creates intermediate maps; a numeric part indexes a sequence ("pipeline.0.size=320");
  // "data.val=_delete_" removes the key. Throws naming the override if it is malformed.
  void set_override(const std::string& assignment);

  bool has(const std::string& key) const;
  Config operator[](const std::string& key) const;  // throws if missing, naming the key path
  std::optional<Config> find(const std::string& key) const;

  template <typename T>
  T get(const std::string& key) const {
    return (*this)[key].as<T>();
  }
  template <typename T>
  T get(const std::string& key, const T& fallback) const {
    if (!has(key)) return fallback;
    return (*this)[key].as<T>();
  }
  // This node converted to T; throws naming the key path, the expected type and what was found.
  // Floating-point values (also inside lists) must be finite: YAML's .inf / .nan are refused.
  template <typename T>
  T as() const {
    T value;
    try {
      value = node_.as<T>();
    } catch (const YAML::Exception&) {
      throw Error(where() + ": expected " + type_name<T>() + ", got " + describe_node(node_));
    }
    if constexpr (std::is_floating_point_v<T>) {
      check_finite(value);
    } else if constexpr (is_vector<T>::value) {
      if constexpr (std::is_floating_point_v<typename T::value_type>) {
        for (const auto v : value) check_finite(v);
      }
    }
    return value;
  }

  // Throws naming the first key of this map that is not in `known` and listing the known keys.
  void check_keys(const std::vector<std::string>& known) const;

  bool is_map() const { return node_.IsMap(); }
  bool is_sequence() const { return node_.IsSequence(); }
  size_t size() const { return node_.size(); }
  Config at(size_t i) const;  // sequence element, path "key[i]"
  std::vector<std::string> keys() const;

  const YAML::Node& node() const { return node_; }
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  std::string where() const;  // "configs/fcos.yaml: model.head"
  std::string dump() const;   // YAML text of this node (one line for scalars)

 private:
  template <typename T>
  struct is_vector : std::false_type {};
  template <typename U, typename A>
  struct is_vector<std::vector<U, A>> : std::true_type {};
  template <typename T>
  static std::pair<const char*, const char*> type_names();
  template <typename T>
  static std::string type_name();
  void check_finite(double v) const {
    SETDET_CHECK(std::isfinite(v), where(), ": expected a finite number, got ",
                 describe_node(node_));
  }

  YAML::Node node_;
  std::string file_;
  std::string path_;
};

// {"a number", "numbers"}: a scalar type's name alone and in a list.
template <typename T>
std::pair<const char*, const char*> Config::type_names() {
  if constexpr (std::is_same_v<T, bool>) return {"a boolean", "booleans"};
  if constexpr (std::is_integral_v<T>) return {"an integer", "integers"};
  if constexpr (std::is_floating_point_v<T>) return {"a number", "numbers"};
  if constexpr (std::is_same_v<T, std::string>) return {"a string", "strings"};
  return {"a value of another type", "values"};
}

template <typename T>
std::string Config::type_name() {
  if constexpr (is_vector<T>::value) {
    return std::string("a list of ") + type_names<typename T::value_type>().second;
  } else {
    return type_names<T>().first;
  }
}

}  // namespace setdet
