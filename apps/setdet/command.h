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
//
// A command group (`setdet vrd eval`, `setdet vrd train`, ...) is a command whose setup calls
// add_subcommands(app, "vrd"); each member registers itself from its own file:
//
//   static const setdet::cli::RegisterSubcommand kVrdEval{"vrd", "eval", "...", setup};
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
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

// The registered members of a command group.
std::vector<Command>& subcommands(const std::string& group);

struct RegisterSubcommand {
  RegisterSubcommand(const std::string& group, std::string name, std::string help, Setup setup) {
    subcommands(group).push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

// Adds the members of `group` to `app` (one of them is required) and returns the action that
// runs the chosen one.
Action add_subcommands(CLI::App& app, const std::string& group);

// For every floating-point option (each element of a list option): a finite number. CLI11's
// Range lets NaN through (every comparison with it is false).
inline const CLI::Validator kFinite(
    [](std::string& text) {
      size_t used = 0;
      double v = 0.0;
      try {
        v = std::stod(text, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != text.size()) return "expected a number, got '" + text + "'";
      if (!std::isfinite(v)) return "expected a finite number, got '" + text + "'";
      return std::string();
    },
    "FINITE");

}  // namespace setdet::cli
