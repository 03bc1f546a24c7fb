#include "setdet/config/config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace setdet {
namespace {

namespace fs = std::filesystem;

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// Whether a map says `_delete_: true` (MMCV: replace the base's map instead of merging into it).
bool replaces_base(const YAML::Node& node) {
  if (!node.IsMap() || !node["_delete_"]) return false;
  const YAML::Node flag = node["_delete_"];
  SETDET_CHECK(
      flag.IsScalar() && (flag.as<std::string>() == "true" || flag.as<std::string>() == "false"),
      "config: _delete_ inside a map must be true or false, got '", YAML::Dump(flag), "'");
  return flag.as<bool>();
}

// `node` without its `_delete_` entries, at every depth.
YAML::Node strip_delete(const YAML::Node& node) {
  if (!node.IsMap()) return YAML::Clone(node);
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& kv : node) {
    const auto key = kv.first.as<std::string>();
    if (key != "_delete_") out[key] = strip_delete(kv.second);
  }
  return out;
}

// Recursively merges `over` onto `base` (maps merge, everything else replaces; `key: _delete_`
// removes the key; a map with `_delete_: true` replaces the base's map); returns a new node.
YAML::Node merge(const YAML::Node& base, const YAML::Node& over) {
  if (!base.IsMap() || !over.IsMap()) return strip_delete(over);
  YAML::Node out = YAML::Clone(base);
  for (const auto& kv : over) {
    const auto key = kv.first.as<std::string>();
    if (key == "_delete_") continue;
    if (kv.second.IsScalar() && kv.second.as<std::string>() == "_delete_") {
      out.remove(key);
    } else if (out[key] && out[key].IsMap() && kv.second.IsMap() && !replaces_base(kv.second)) {
      out[key] = merge(out[key], kv.second);
    } else {
      out[key] = strip_delete(kv.second);
    }
  }
  return out;
}

YAML::Node load_file(const fs::path& file, std::vector<fs::path>& stack) {
  SETDET_CHECK(fs::exists(file), "config: file not found: ", file.string());
  const auto canonical = fs::canonical(file);
  for (const auto& f : stack) {
    SETDET_CHECK(f != canonical, file.string(), ": _base_ inheritance cycle");
  }
  YAML::Node node;
  try {
    node = YAML::LoadFile(file.string());
  } catch (const YAML::Exception& e) {
    throw Error(file.string() + ": invalid YAML: " + e.what());
  }
  if (!node || node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  SETDET_CHECK(node.IsMap(), file.string(), ": a config must be a YAML map at the top level");
  if (!node["_base_"]) return node;

  std::vector<std::string> bases;
  const YAML::Node base_node = node["_base_"];
  if (base_node.IsSequence()) {
    for (const auto& b : base_node) bases.push_back(b.as<std::string>());
  } else {
    bases.push_back(base_node.as<std::string>());
  }
  node.remove("_base_");
  stack.push_back(canonical);
  YAML::Node merged(YAML::NodeType::Map);
  for (const auto& b : bases) {
    merged = merge(merged, load_file(file.parent_path() / b, stack));
  }
  stack.pop_back();
  return merge(merged, node);
}

}  // namespace

Config::Config(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {}

Config Config::load(const std::string& file) {
  std::vector<fs::path> stack;
  return Config(load_file(file, stack), file);
}

Config Config::parse(const std::string& yaml, const std::string& origin) {
  YAML::Node node;
  try {
    node = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw Error(origin + ": invalid YAML: " + e.what());
  }
  if (!node || node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  return Config(node, origin);
}

void Config::set_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  SETDET_CHECK(eq != std::string::npos && eq > 0, "--set '", assignment,
               "': expected key.path=value");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error("--set '" + assignment + "': value is not valid YAML: " + e.what());
  }
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    SETDET_CHECK(!part.empty(), "--set '", assignment, "': empty key in '", key, "'");
    parts.push_back(part);
  }
  // yaml-cpp's operator[] returns handles, so walk with explicit resets. A part that is a number
  // indexes a sequence ("data.test.dataset.pipeline.0.min_size=320").
  const auto sequence_index = [&](const YAML::Node& seq, const std::string& part) -> int64_t {
    if (!seq.IsSequence()) return -1;
    SETDET_CHECK(!part.empty() && part.find_first_not_of("0123456789") == std::string::npos &&
                     part.size() < 10 && std::stoll(part) < static_cast<int64_t>(seq.size()),
                 "--set '", assignment, "': '", part, "' is not an index of a sequence of ",
                 seq.size(), " in ", file_);
    return std::stoll(part);
  };
  std::vector<YAML::Node> chain{node_};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const int64_t index = sequence_index(chain.back(), parts[i]);
    if (index >= 0) {
      chain.push_back(chain.back()[static_cast<size_t>(index)]);
      continue;
    }
    YAML::Node child = chain.back()[parts[i]];
    if (!child.IsMap() && !child.IsSequence()) {
      SETDET_CHECK(!child.IsDefined() || child.IsNull(), "--set '", assignment, "': '", parts[i],
                   "' is not a map in ", file_);
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      child = chain.back()[parts[i]];
    }
    chain.push_back(child);
  }
  const int64_t last = sequence_index(chain.back(), parts.back());
  if (value.IsScalar() && value.Scalar() == "_delete_") {  // as `key: _delete_` in a YAML file
    SETDET_CHECK(last < 0, "--set '", assignment, "': _delete_ removes a map key, not an element");
    chain.back().remove(parts.back());
  } else if (last >= 0) {
    chain.back()[static_cast<size_t>(last)] = value;
  } else {
    chain.back()[parts.back()] = value;
  }
}

bool Config::has(const std::string& key) const {
  return node_.IsMap() && static_cast<bool>(node_[key]);
}

Config Config::operator[](const std::string& key) const {
  SETDET_CHECK(node_.IsMap(), where(), ": expected a map to look up '", key, "'");
  const YAML::Node child = node_[key];
  SETDET_CHECK(child, file_, ": missing key '", join_path(path_, key), "'");
  return Config(child, file_, join_path(path_, key));
}

std::optional<Config> Config::find(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return (*this)[key];
}

void Config::check_keys(const std::vector<std::string>& known) const {
  if (!node_.IsMap()) return;
  const std::set<std::string> allowed(known.begin(), known.end());
  for (const auto& kv : node_) {
    const auto key = kv.first.as<std::string>();
    if (key == "type" || allowed.count(key)) continue;
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw Error(file_ + ": unknown key '" + join_path(path_, key) + "' (known: " + list + ")");
  }
}

Config Config::at(size_t i) const {
  SETDET_CHECK(node_.IsSequence(), where(), ": expected a list");
  SETDET_CHECK(i < node_.size(), where(), ": index ", i, " out of range (size ", node_.size(), ")");
  return Config(node_[i], file_, path_ + "[" + std::to_string(i) + "]");
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (const auto& kv : node_) out.push_back(kv.first.as<std::string>());
  return out;
}

std::string Config::where() const { return file_ + ": " + (path_.empty() ? "<root>" : path_); }

std::string Config::dump() const {
  YAML::Emitter out;
  out << YAML::Flow << node_;
  return out.c_str();
}

}  // namespace setdet
