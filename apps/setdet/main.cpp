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

std::vector<Command>& subcommands(const std::string& group) {
  static std::map<std::string, std::vector<Command>> registry;
  return registry[group];
}

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

}  // namespace setdet::cli

int main(int argc, char** argv) {
  using namespace setdet::cli;
  CLI::App app{"setdet: object detection with first-class set-level stages"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads,
                 "threads for LibTorch and setdet (default: all cores); before or after the "
                 "subcommand")
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
