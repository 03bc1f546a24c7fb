// `setdet test CONFIG CKPT [--out dets.json] [--split val|test] [--json metrics.json] [--dedup X ...]
// [--set key=value ...]`: runs the detector of CONFIG with the weights of CKPT over the chosen
// split (data.test, else data.val), writes the COCO results file and prints the pycocotools
// summary. For a detector with several output modes (FCOS_PSS) every mode is evaluated from the
// same weights and reported side by side ("AP_without_nms", "AP_with_nms", ... in --json);
// `--dedup nms --dedup soft_nms ...` does the same for duplicate-removal choices ("AP_nms",
// "AP_soft_nms", ...).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/io/json_text.h"
#include "setdet/core/io/score_threshold_file.h"
#include "setdet/engine/autocast.h"
#include "setdet/engine/evaluator.h"
#include "setdet/engine/loader_source.h"
#include "setdet/engine/runner.h"
#include "setdet/io/state_dict.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/models/dedup/duplicate_removal.h"
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
  std::vector<std::string> dedup;
  std::string precision = "float32";
  bool no_fuse = false;
};

// "soft_nms:method=gaussian" -> "soft_nms_method_gaussian" (a metric-name suffix).
std::string metric_tag(const std::string& spec) {
  std::string tag;
  for (char ch : spec) {
    const bool word = std::isalnum(static_cast<unsigned char>(ch)) || ch == '.';
    if (word) {
      tag += ch;
    } else if (!tag.empty() && tag.back() != '_') {
      tag += '_';
    }
  }
  while (!tag.empty() && tag.back() == '_') tag.pop_back();
  return tag;
}

int run_test(const TestOptions& o) {
  Config cfg = Config::load(o.config);
  for (const auto& s : o.overrides) cfg.set_override(s);
  const Config data_cfg = cfg["data"];
  std::string split = o.split;
  if (split.empty()) split = data_cfg.has("test") ? "test" : "val";
  SETDET_CHECK(data_cfg.has(split), o.config, ": no data.", split, " to test on");

  auto model = DetectorRegistry().build(cfg["model"]);
  const auto loaded = load_model_weights(o.checkpoint, *model, cfg);
  model->eval();
  model->set_inference_dtype(parse_precision(o.precision, "--precision"));
  // as setdet infer and setdet::Detector: BatchNorm folded, weights prepacked for oneDNN
  if (!o.no_fuse) fuse_for_inference(*model);
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
  data.params.operating_point = true;

  const std::string configured_mode = model->output_mode();
  if (!model->output_modes().empty()) std::cout << "== output mode " << configured_mode << "\n";
  const auto result = evaluate_detector(*model, data);
  if (!o.out.empty()) write_coco_results(o.out, result.detections);
  std::cout << format_coco_summary(result.coco);
  std::cout << fmt::format(
      "{} images, {} detections, inference {:.2f} s ({:.1f} img/s), evaluation {:.2f} s "
      "({})\n",
      result.images, result.detections.size(), result.inference_seconds,
      result.inference_seconds > 0 ? static_cast<double>(result.images) / result.inference_seconds
                                   : 0.0,
      result.eval_seconds, loaded.describe());
  // the drawing threshold `setdet infer` and setdet::Detector use for this checkpoint
  const CocoOperatingPoint& op = result.coco.operating_point;
  std::string stored = score_threshold_path(o.checkpoint);
  try {
    write_score_threshold(o.checkpoint, op, split, result.images);
  } catch (const Error& e) {  // e.g. a read-only model directory: the evaluation still counts
    std::cerr << "setdet test: warning: the score threshold is not stored: " << e.what() << "\n";
    stored = "not stored";
  }
  std::cout << fmt::format(
      "F1-best score threshold {:.4f} (IoU {:.2f}: F1 {:.3f}, precision {:.3f}, recall {:.3f}) -> "
      "{}\n",
      op.score_threshold, op.iou_threshold, op.f1, op.precision, op.recall, stored);

  // Variants of the same weights evaluated side by side: each --dedup choice (on the configured
  // output mode), else every output mode of a detector with several (FCOS_PSS: "nms_free",
  // "nms"). The configured state was evaluated above (the unsuffixed stats, --out); the variants
  // are shown in a table and written as "<stat>_<tag>".
  struct Variant {
    std::string name;
    std::string tag;
    std::function<void()> apply;
  };
  std::vector<Variant> variants;
  std::function<void()> restore = [] {};
  if (!o.dedup.empty()) {
    DuplicateRemovalConfig* live = model->duplicate_removal();
    SETDET_CHECK(live != nullptr, "--dedup: this detector",
                 configured_mode.empty() ? "" : " in output mode " + configured_mode,
                 " has no duplicate-removal step to replace");
    const DuplicateRemovalConfig configured = *live;
    for (const auto& spec : o.dedup) {
      const auto choice = parse_duplicate_removal(spec, "--dedup", configured);
      variants.push_back({choice.describe(), metric_tag(spec), [live, choice] { *live = choice; }});
    }
    restore = [live, configured] { *live = configured; };
  } else {
    for (const auto& mode : model->output_modes()) {
      variants.push_back(
          {mode.name, mode.metric_tag, [&model, mode] { model->set_output_mode(mode.name); }});
    }
    restore = [&model, configured_mode] {
      if (!configured_mode.empty()) model->set_output_mode(configured_mode);
    };
  }
  struct VariantResult {
    const Variant* variant;
    std::map<std::string, double> stats;
    size_t detections = 0;
    double inference_seconds = 0.0;
  };
  std::vector<VariantResult> results;
  for (const auto& v : variants) {
    if (o.dedup.empty() && v.name == configured_mode) {
      results.push_back(
          {&v, coco_stats_map(result.coco), result.detections.size(), result.inference_seconds});
      continue;
    }
    v.apply();
    const auto r = evaluate_detector(*model, data);
    std::cout << "== " << v.name << "\n" << format_coco_summary(r.coco);
    std::cout << fmt::format("{} detections, inference {:.2f} s\n", r.detections.size(),
                             r.inference_seconds);
    results.push_back({&v, coco_stats_map(r.coco), r.detections.size(), r.inference_seconds});
  }
  restore();
  if (!results.empty()) {
    size_t width = 10;
    for (const auto& v : variants) width = std::max(width, v.name.size());
    std::cout << fmt::format("{:<{}} {:<16} {:>6} {:>6} {:>6} {:>6} {:>10} {:>11}\n", "variant",
                             width, "metrics", "AP", "AP50", "AP75", "AR100", "detections",
                             "inference_s");
    for (const auto& m : results) {
      std::cout << fmt::format(
          "{:<{}} {:<16} {:>6.3f} {:>6.3f} {:>6.3f} {:>6.3f} {:>10} {:>11.2f}\n", m.variant->name,
          width, "*_" + m.variant->tag, m.stats.at("AP"), m.stats.at("AP50"), m.stats.at("AP75"),
          m.stats.at("AR100"), m.detections, m.inference_seconds);
    }
  }
  if (!o.json.empty()) {
    std::ostringstream os;
    os << "{";
    for (const auto& [name, value] : coco_stats_map(result.coco)) {
      os << "\"" << name << "\": " << json_number(value) << ", ";
    }
    if (!configured_mode.empty()) os << "\"output_mode\": \"" << configured_mode << "\", ";
    os << "\"score_threshold_f1\": " << json_number(op.score_threshold)
       << ", \"F1\": " << json_number(op.f1) << ", ";
    for (const auto& m : results) {
      for (const auto& [name, value] : m.stats) {
        os << "\"" << name << "_" << m.variant->tag << "\": " << json_number(value) << ", ";
      }
      os << "\"inference_seconds_" << m.variant->tag << "\": " << json_number(m.inference_seconds)
         << ", ";
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
      app.add_option("checkpoint", o->checkpoint,
                     "setdet checkpoint (.pt) or PyTorch state_dict (.pth from torch.save)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--out", o->out, "write the detections as a COCO results JSON");
      app.add_option("--split", o->split, "data split to test (default: test, else val)")
          ->check(CLI::IsMember({"train", "val", "test"}));
      app.add_option("--json", o->json, "write the 12 COCO stats and timing as JSON");
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      app.add_option("--precision", o->precision,
                     "network precision: float32, or bfloat16 (backbone, neck and dense head in "
                     "bfloat16; fast on CPUs with AVX512-BF16 / AMX)")
          ->check(CLI::IsMember({"float32", "bfloat16"}));
      app.add_flag("--no-fuse", o->no_fuse,
                   "run the model as trained: no BatchNorm folding, no prepacked convolutions");
      app.add_option("--dedup", o->dedup,
                     "also evaluate with this duplicate removal, side by side (repeatable): nms, "
                     "soft_nms, matrix_nms, learned, none, with options as "
                     "soft_nms:method=gaussian,sigma=0.5 (unset options: the config's)")
          ->allow_extra_args(false);
      return [o] { return run_test(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
