// setdet command-line entry point: global options, then one registered subcommand.
#include <algorithm>
#include <exception>
#include <iostream>
#include <map>

#include "command.h"
#include "setdet/core/error.h"
#include "setdet/engine/threads.h"

namespace setdet::cli {

std::vector<Command>& commands() {
  static std::vector<Command> registry;
  return registry;
}

namespace {
int g_threads = 0;
}  // namespace

int requested_threads() { return g_threads; }

}  // namespace setdet::cli

int main(int argc, char** argv) {
  using namespace setdet::cli;
  CLI::App app{"setdet: object detection with first-class set-level stages"};
  app.require_subcommand(1);
  int& threads = g_threads;
  app.add_option("--threads", threads,
                 "threads for LibTorch and setdet (default: all cores, divided among the local "
                 "workers of a data-parallel run); before or after the subcommand")
      ->check(CLI::NonNegativeNumber);

  auto& registry = commands();
  std::sort(registry.begin(), registry.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::map<CLI::App*, Action> actions;
  for (const auto& command : registry) {
    CLI::App* sub = app.add_subcommand(command.name, command.help);
    sub->fallthrough();  // global options (--threads) may also follow the subcommand
    actions[sub] = command.setup(*sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  setdet::init_threads(threads);

  try {
    for (auto& [sub, action] : actions) {
      if (sub->parsed()) return action();
    }
  } catch (const std::exception& e) {
    std::cerr << "setdet: error: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
