// Subcommands of the setdet CLI. Each subcommand lives in its own file and registers itself:
//
//   static const setdet::cli::RegisterCommand kEval{
//       "eval", "COCO bbox evaluation", [](CLI::App& app) {
//         auto opts = std::make_shared<EvalOptions>();
//         app.add_option("--gt", opts->gt, "...")->required();
//         return [opts] { return run_eval(*opts); };
//       }};
//
// The setup function adds the subcommand's options to `app` and returns the action run when the
// subcommand is chosen (its return value is the process exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace setdet::cli {

using Action = std::function<int()>;
using Setup = std::function<Action(CLI::App&)>;

struct Command {
  std::string name;
  std::string help;
  Setup setup;
};

std::vector<Command>& commands();

// The global --threads value (0: not given, i.e. all cores).
int requested_threads();

struct RegisterCommand {
  RegisterCommand(std::string name, std::string help, Setup setup) {
    commands().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

}  // namespace setdet::cli
