// `setdet test CONFIG CKPT [--out dets.json] [--split val|test] [--json metrics.json]
// [--set key=value ...]`: runs the detector of CONFIG with the weights of CKPT over the chosen
// split (data.test, else data.val), writes the COCO results file and prints the pycocotools
// summary.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/coco.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/engine/evaluator.h"
#include "setdet/engine/loader_source.h"
#include "setdet/engine/runner.h"
#include "setdet/models/detector.h"

namespace setdet::cli {
namespace {

struct TestOptions {
  std::string config;
  std::string checkpoint;
  std::string out;
  std::string split;
  std::string json;
  std::vector<std::string> overrides;
};

int run_test(const TestOptions& o) {
  Config cfg = Config::load(o.config);
  for (const auto& s : o.overrides) cfg.set_override(s);
  const Config data_cfg = cfg["data"];
  std::string split = o.split;
  if (split.empty()) split = data_cfg.has("test") ? "test" : "val";
  SETDET_CHECK(data_cfg.has(split), o.config, ": no data.", split, " to test on");

  auto model = DetectorRegistry().build(cfg["model"]);
  const auto loaded = load_checkpoint(o.checkpoint, *model);
  YAML::Node loader_node = YAML::Clone(data_cfg[split].node());
  if (loader_node.IsMap() && !loader_node["shuffle"]) loader_node["shuffle"] = false;
  std::shared_ptr<DataLoader> loader =
      DataLoader::from_config(Config(loader_node, cfg.file(), "data." + split), /*default_seed=*/0);
  SETDET_CHECK(loader->dataset().num_classes() == model->num_classes(), o.config,
               ": the model predicts ", model->num_classes(), " classes, data.", split, " has ",
               loader->dataset().num_classes());
  EvalData data;
  data.source = std::make_shared<LoaderBatchSource>(loader);
  data.gt = loader->dataset().ground_truth();
  data.label_to_category = loader->dataset().label_to_category();

  const auto result = evaluate_detector(*model, data);
  if (!o.out.empty()) write_coco_results(o.out, result.detections);
  std::cout << format_coco_summary(result.coco);
  std::cout << fmt::format(
      "{} images, {} detections, inference {:.2f} s ({:.1f} img/s), evaluation {:.2f} s "
      "(checkpoint at iteration {})\n",
      result.images, result.detections.size(), result.inference_seconds,
      result.inference_seconds > 0 ? static_cast<double>(result.images) / result.inference_seconds
                                   : 0.0,
      result.eval_seconds, loaded.state.iter);
  if (!o.json.empty()) {
    std::ostringstream os;
    os << "{";
    for (const auto& [name, value] : coco_stats_map(result.coco)) {
      os << "\"" << name << "\": " << json_number(value) << ", ";
    }
    os << "\"images\": " << result.images
       << ", \"inference_seconds\": " << json_number(result.inference_seconds)
       << ", \"images_per_second\": "
       << json_number(result.inference_seconds > 0
                          ? static_cast<double>(result.images) / result.inference_seconds
                          : 0.0)
       << "}\n";
    write_file_atomic(o.json, os.str());
  }
  return 0;
}

const RegisterCommand kTest{
    "test", "evaluate a trained detector: COCO results file + summary", [](CLI::App& app) {
      auto o = std::make_shared<TestOptions>();
      app.add_option("config", o->config, "config YAML")->required()->check(CLI::ExistingFile);
      app.add_option("checkpoint", o->checkpoint, "checkpoint (.pt) written by setdet train")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--out", o->out, "write the detections as a COCO results JSON");
      app.add_option("--split", o->split, "data split to test (default: test, else val)")
          ->check(CLI::IsMember({"train", "val", "test"}));
      app.add_option("--json", o->json, "write the 12 COCO stats and timing as JSON");
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      return [o] { return run_test(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
