// YAML configs with `_base_` inheritance: the input is a config and, after a line "#---", the
// base it inherits (`_base_: base.yaml` in the seeds). Every node of a config that loads is then
// read as each type the components ask for; any input either works or is a setdet::Error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "setdet/config/config.h"
#include "setdet/core/error.h"

namespace {

using setdet::Config;

template <typename T>
void try_as(const Config& c) {
  try {
    (void)c.as<T>();
  } catch (const setdet::Error&) {
  }
}

// Depth-first over the loaded tree, as the registries read it.
void visit(const Config& c, int depth) {
  if (depth > 64) return;
  try_as<double>(c);
  try_as<int64_t>(c);
  try_as<bool>(c);
  try_as<std::string>(c);
  try_as<std::vector<double>>(c);
  try_as<std::vector<int64_t>>(c);
  (void)c.dump();
  (void)setdet::describe_node(c.node());
  if (c.is_map()) {
    try {
      c.check_keys({"type", "model", "data"});
    } catch (const setdet::Error&) {
    }
    for (const auto& key : c.keys()) visit(c[key], depth + 1);
  } else if (c.is_sequence()) {
    for (size_t i = 0; i < c.size() && i < 64; ++i) visit(c.at(i), depth + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find("\n#---\n");
  const std::string child = input.substr(0, split);
  const std::string base = split == std::string::npos ? "" : input.substr(split + 6);
  setdet::fuzz::write_scratch("base.yaml", base);
  const std::string path = setdet::fuzz::write_scratch("config.yaml", child);
  try {
    Config cfg = Config::load(path);
    cfg.set_override("fuzz.key=[1, {a: 2}]");
    visit(cfg, 0);
  } catch (const setdet::Error&) {
  }
  return 0;
}
