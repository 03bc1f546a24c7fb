// YAML configs in the MMDetection mould: `_base_` inheritance, `--set a.b.c=v` overrides, typed
// access whose errors name the file and the key path.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "setdet/core/error.h"

namespace setdet {

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
  // This node converted to T; throws naming the key path and the expected type.
  template <typename T>
  T as() const {
    try {
      return node_.as<T>();
    } catch (const YAML::Exception&) {
      throw Error(where() + ": expected " + type_name<T>() + ", got '" + dump() + "'");
    }
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
  static const char* type_name();

  YAML::Node node_;
  std::string file_;
  std::string path_;
};

template <typename T>
const char* Config::type_name() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else return "a value of another type";
}

}  // namespace setdet
