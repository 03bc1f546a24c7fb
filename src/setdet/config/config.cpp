#include "setdet/config/config.h"

#include <yaml-cpp/depthguard.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace setdet {
namespace {

namespace fs = std::filesystem;

// A config is a few hundred nodes; YAML aliases can make a small file expand to billions
// ("billion laughs"), which merging and copying would materialise.
constexpr size_t kMaxNodes = 100000;

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// One line of YAML flow text for `node`, cut after about 80 characters (loaded nodes keep their
// block style, which YAML::Emitter would honour over YAML::Flow).
void append_flow(const YAML::Node& node, std::string& out) {
  constexpr size_t kLimit = 80;
  if (out.size() > kLimit) return;
  if (node.IsSequence()) {
    out += "[";
    for (size_t i = 0; i < node.size() && out.size() <= kLimit; ++i) {
      if (i) out += ", ";
      append_flow(node[i], out);
    }
    out += "]";
  } else if (node.IsMap()) {
    out += "{";
    bool first = true;
    for (const auto& kv : node) {
      if (out.size() > kLimit) break;
      if (!first) out += ", ";
      first = false;
      append_flow(kv.first, out);
      out += ": ";
      append_flow(kv.second, out);
    }
    out += "}";
  } else if (node.IsScalar()) {
    out += node.Scalar();
  } else {
    out += "null";
  }
}

std::string flow(const YAML::Node& node) {
  std::string text;
  append_flow(node, text);
  return text.size() > 80 ? text.substr(0, 77) + "..." : text;
}

// Walks `root` as it would be expanded (an alias counts each time it is used), without
// recursion and in memory bounded by kMaxNodes: at most kMaxNodes nodes, every map key a scalar.
void check_tree(const YAML::Node& root, const std::string& origin) {
  struct Visit {
    YAML::Node node;
    size_t parent;  // index in `seen` (the root's is 0, itself)
    bool in_map;    // a map entry (named by `key`) or a sequence element (by `index`)
    YAML::Node key;
    size_t index;
  };
  std::vector<Visit> seen{{root, 0, false, YAML::Node(), 0}};
  // "model.head[2].type", built only for an error (key texts cut at 40 characters)
  auto path_of = [&](size_t v) {
    std::vector<std::string> parts;
    for (; v != 0; v = seen[v].parent) {
      const Visit& x = seen[v];
      const std::string& k = x.in_map ? x.key.Scalar() : std::string();
      parts.push_back(x.in_map ? "." + (k.size() > 40 ? k.substr(0, 37) + "..." : k)
                               : "[" + std::to_string(x.index) + "]");
    }
    std::string path;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) path += *it;
    if (!path.empty() && path[0] == '.') path.erase(0, 1);
    return path.empty() ? std::string("<root>") : path;
  };
  auto add = [&](size_t parent, const YAML::Node& node, bool in_map, const YAML::Node& key,
                 size_t index) {
    SETDET_CHECK(seen.size() < kMaxNodes, origin, ": the config expands to more than ", kMaxNodes,
                 " YAML nodes (aliases of aliases?); stopped under '", path_of(parent), "'");
    seen.push_back({node, parent, in_map, key, index});
  };
  for (size_t v = 0; v < seen.size(); ++v) {
    const YAML::Node node = seen[v].node;
    if (node.IsSequence()) {
      for (size_t i = 0; i < node.size(); ++i) add(v, node[i], false, YAML::Node(), i);
    } else if (node.IsMap()) {
      for (const auto& kv : node) {
        SETDET_CHECK(kv.first.IsScalar(), origin, ": a key under '", path_of(v), "' is ",
                     describe_node(kv.first), ", expected a string");
        add(v, kv.second, true, kv.first, 0);
      }
    }
  }
}

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    throw Error(origin + ": invalid YAML: nested more than " + std::to_string(e.depth() - 1) +
                " levels deep (line " + std::to_string(e.mark.line + 1) + ")");
  } catch (const YAML::Exception& e) {
    throw Error(origin + ": invalid YAML: " + e.what());
  }
  check_tree(node, origin);
  return node;
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

// `_base_: name` or `_base_: [names]`, each relative to `file`'s directory.
std::vector<fs::path> base_files(const fs::path& file, const YAML::Node& base_node) {
  const std::string where = file.string() + ": _base_";
  std::vector<YAML::Node> names;
  if (base_node.IsSequence()) {
    for (const auto& b : base_node) names.push_back(b);
  } else {
    names.push_back(base_node);
  }
  std::vector<fs::path> out;
  for (const auto& n : names) {
    SETDET_CHECK(n.IsScalar() && !n.Scalar().empty(), where,
                 ": expected a file name or a list of file names, got ", describe_node(n));
    const fs::path base = file.parent_path() / n.Scalar();
    std::error_code ec;
    SETDET_CHECK(fs::exists(base, ec), where, ": '", n.Scalar(), "': file not found (looked for ",
                 base.string(), ")");
    SETDET_CHECK(fs::is_regular_file(base, ec), where, ": '", n.Scalar(), "' (", base.string(),
                 ") is ", fs::is_directory(base, ec) ? "a directory" : "not a regular file",
                 ", expected a YAML file");
    out.push_back(base);
  }
  return out;
}

YAML::Node load_file(const fs::path& file, std::vector<fs::path>& stack) {
  std::error_code ec;
  SETDET_CHECK(fs::exists(file, ec), "config: file not found: ", file.string());
  SETDET_CHECK(fs::is_regular_file(file, ec), file.string(), ": is ",
               fs::is_directory(file, ec) ? "a directory" : "not a regular file",
               ", expected a YAML file");
  const auto canonical = fs::canonical(file);
  for (const auto& f : stack) {
    SETDET_CHECK(f != canonical, file.string(), ": _base_ inheritance cycle");
  }
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  SETDET_CHECK(!in.bad(), file.string(), ": cannot read");
  YAML::Node node = parse_yaml(text.str(), file.string());
  if (!node || node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  SETDET_CHECK(node.IsMap(), file.string(), ": a config must be a YAML map at the top level, got ",
               describe_node(node));
  if (!node["_base_"]) return node;

  const std::vector<fs::path> bases = base_files(file, node["_base_"]);
  node.remove("_base_");
  stack.push_back(canonical);
  YAML::Node merged(YAML::NodeType::Map);
  for (const auto& b : bases) merged = merge(merged, load_file(b, stack));
  stack.pop_back();
  merged = merge(merged, node);
  check_tree(merged, file.string());
  return merged;
}

}  // namespace

Config::Config(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {}

Config Config::load(const std::string& file) {
  std::vector<fs::path> stack;
  return Config(load_file(file, stack), file);
}

Config Config::parse(const std::string& yaml, const std::string& origin) {
  YAML::Node node = parse_yaml(yaml, origin);
  if (!node || node.IsNull()) node = YAML::Node(YAML::NodeType::Map);
  return Config(node, origin);
}

void Config::set_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  SETDET_CHECK(eq != std::string::npos && eq > 0, "--set '", assignment,
               "': expected key.path=value");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  const YAML::Node value = parse_yaml(text, "--set '" + assignment + "': the value");
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

std::string describe_node(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map " + flow(node);
    case YAML::NodeType::Sequence:
      return "a list " + flow(node);
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Undefined:
      return "nothing";
    default:
      return "'" + flow(node) + "'";
  }
}

}  // namespace setdet
