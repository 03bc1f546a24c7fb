// setdet command-line entry point: global options, then one registered subcommand.
#include <algorithm>
#include <cstring>
#include <exception>
#include <iostream>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/core/error.h"
#include "setdet/core/malloc_tuning.h"
#include "setdet/core/parallel.h"
#include "setdet/engine/threads.h"

namespace setdet::cli {

std::vector<Command>& commands() {
  static std::vector<Command> registry;
  return registry;
}

std::vector<Command>& subcommands(const std::string& group) {
  static std::map<std::string, std::vector<Command>> registry;
  return registry[group];
}

namespace {
int g_threads = 0;
}  // namespace

int requested_threads() { return g_threads; }

Action add_subcommands(CLI::App& app, const std::string& group) {
  app.require_subcommand(1);
  auto members = subcommands(group);
  std::sort(members.begin(), members.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, Action>> actions;
  for (const auto& member : members) {
    CLI::App* sub = app.add_subcommand(member.name, member.help);
    sub->fallthrough();
    actions.emplace_back(sub, member.setup(*sub));
  }
  return [actions]() -> int {
    for (const auto& [sub, action] : actions) {
      if (sub->parsed()) return action();
    }
    return 1;
  };
}

namespace {

// Edit distance between two option names (insertions, deletions, substitutions).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The long option names (--name) of `app` and of the chosen subcommands below it.
void long_options(const CLI::App& app, std::vector<std::string>& out) {
  for (const CLI::Option* o : app.get_options()) {
    for (const auto& name : o->get_lnames()) out.push_back("--" + name);
  }
  for (const CLI::App* sub : app.get_subcommands()) long_options(*sub, out);
}

// For each argument CLI11 did not expect that looks like a long option: the closest option of the
// chosen subcommand (or the global ones), when one is close enough to be a likely typo.
std::string suggestions(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> known;
  long_options(app, known);
  std::string out;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg.size() < 3) continue;
    arg = arg.substr(0, arg.find('='));
    if (std::find(known.begin(), known.end(), arg) != known.end()) continue;
    const std::string* best = nullptr;
    size_t best_distance = 0;
    for (const auto& k : known) {
      const size_t d = edit_distance(arg, k);
      if (best == nullptr || d < best_distance) {
        best = &k;
        best_distance = d;
      }
    }
    if (best != nullptr && best_distance <= std::max<size_t>(2, arg.size() / 3)) {
      out += "setdet: unknown option '" + arg + "'; did you mean '" + *best + "'?\n";
    }
  }
  return out;
}

// The first word that is neither a global option nor its value, when it names no subcommand
// (CLI11 would only say that a subcommand is required).
std::string unknown_subcommand(int argc, char** argv, const std::vector<Command>& registry) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads") {
      ++i;
      continue;
    }
    if (arg.rfind('-', 0) == 0) continue;
    const bool known = std::any_of(registry.begin(), registry.end(),
                                   [&](const Command& c) { return c.name == arg; });
    return known ? std::string() : arg;
  }
  return "";
}

int run(int argc, char** argv) {
  CLI::App app{"setdet: object detection with first-class set-level stages"};
  app.require_subcommand(1);
  // help shows every option's default (subcommands inherit this when they are added)
  app.option_defaults()->always_capture_default();
  int& threads = g_threads;
  app.add_option("--threads", threads,
                 "threads for LibTorch and setdet (default: all cores, at most the cores "
                 "available, divided among the local workers of a data-parallel run); before or "
                 "after the subcommand")
      ->check(CLI::NonNegativeNumber);

  auto& registry = commands();
  std::sort(registry.begin(), registry.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  if (const std::string bad = unknown_subcommand(argc, argv, registry); !bad.empty()) {
    std::string known;
    for (const auto& c : registry) known += (known.empty() ? "" : ", ") + c.name;
    std::cerr << "setdet: error: unknown subcommand '" << bad << "'; known: " << known << "\n"
              << suggestions(app, argc, argv);  // e.g. `--thread 2 eval`: '2' read as the subcommand
    return 2;
  }
  std::map<CLI::App*, Action> actions;
  for (const auto& command : registry) {
    CLI::App* sub = app.add_subcommand(command.name, command.help);
    sub->fallthrough();  // global options (--threads) may also follow the subcommand
    actions[sub] = command.setup(*sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    // an unknown option can surface as another error (its value taken for a positional)
    if (code != 0) std::cerr << suggestions(app, argc, argv);
    return code;
  }

  setdet::init_threads(
      static_cast<int>(setdet::cap_thread_count(threads, setdet::available_cores(), "--threads")));
  for (auto& [sub, action] : actions) {
    if (sub->parsed()) return action();
  }
  return 1;
}

}  // namespace
}  // namespace setdet::cli

int main(int argc, char** argv) {
  // large tensors reused from the heap instead of faulted in anew on every call (inference: FCOS
  // R50-FPN network 1.73 s -> 0.85 s); the environment's MALLOC_*_THRESHOLD_ take precedence
  setdet::keep_freed_memory_for_reuse();
  try {
    return setdet::cli::run(argc, argv);
  } catch (const std::bad_alloc&) {
    std::cerr << "setdet: error: out of memory\n";
  } catch (const std::exception& e) {
    std::cerr << "setdet: error: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "setdet: error: unknown exception\n";
  }
  return 1;
}
