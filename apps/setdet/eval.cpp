// `setdet eval`: COCO bbox evaluation of a results file against an instances file, printed as
// pycocotools' summarize() prints it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "command.h"
#include "pr_plot.h"
#include "setdet/core/error.h"
#include "setdet/core/eval/coco_eval.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/io/json_text.h"
#include "setdet/core/parallel.h"

namespace setdet::cli {
namespace {

struct EvalOptions {
  std::string gt;
  std::string dt;
  std::string json;
  std::string plot;
  bool per_class = false;
  bool class_agnostic = false;
  std::vector<double> iou_thrs;
  std::vector<int64_t> max_dets;
  std::vector<std::string> area_rngs;
  std::vector<int64_t> cat_ids;
  std::vector<int64_t> img_ids;
};

struct ClassAp {
  int64_t id = 0;
  std::string name;
  double ap = -1.0, ap50 = -1.0, ap75 = -1.0;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// "small=0:1024" -> label and range; pycocotools' defaults are all=0:1e10 small=0:1024
// medium=1024:9216 large=9216:1e10.
void parse_area_ranges(const std::vector<std::string>& specs, CocoEvalParams& params) {
  params.area_ranges.clear();
  params.area_labels.clear();
  for (const std::string& spec : specs) {
    const size_t eq = spec.find('=');
    const size_t colon = spec.find(':', eq == std::string::npos ? 0 : eq);
    SETDET_CHECK(eq != std::string::npos && eq > 0 && colon != std::string::npos,
                 "--area-rngs: expected LABEL=MIN:MAX (e.g. small=0:1024), got '", spec, "'");
    const std::string label = spec.substr(0, eq);
    const std::string lo_text = spec.substr(eq + 1, colon - eq - 1);
    const std::string hi_text = spec.substr(colon + 1);
    double lo = 0.0, hi = 0.0;
    try {
      size_t used_lo = 0, used_hi = 0;
      lo = std::stod(lo_text, &used_lo);
      hi = std::stod(hi_text, &used_hi);
      SETDET_CHECK(used_lo == lo_text.size() && used_hi == hi_text.size(),
                   "--area-rngs: expected numbers in '", spec, "'");
    } catch (const std::logic_error&) {
      throw Error("--area-rngs: expected LABEL=MIN:MAX with numeric MIN and MAX, got '" + spec +
                  "'");
    }
    SETDET_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo >= 0.0 && lo <= hi,
                 "--area-rngs: expected 0 <= MIN <= MAX in '", spec, "'");
    SETDET_CHECK(std::find(params.area_labels.begin(), params.area_labels.end(), label) ==
                     params.area_labels.end(),
                 "--area-rngs: label '", label, "' given twice");
    params.area_labels.push_back(label);
    params.area_ranges.push_back({lo, hi});
  }
}

CocoEvalParams make_params(const EvalOptions& o, const CocoDataset& gt) {
  CocoEvalParams params;
  if (!o.iou_thrs.empty()) {
    for (const double t : o.iou_thrs) {
      SETDET_CHECK(std::isfinite(t) && t >= 0.0 && t <= 1.0,
                   "--iou-thrs: expected values in [0, 1], got ", t);
    }
    params.iou_thresholds = o.iou_thrs;
  }
  if (!o.max_dets.empty()) {
    for (const int64_t m : o.max_dets) {
      SETDET_CHECK(m > 0, "--max-dets: expected positive values, got ", m);
    }
    params.max_dets = o.max_dets;
  }
  if (!o.area_rngs.empty()) parse_area_ranges(o.area_rngs, params);
  for (const int64_t id : o.cat_ids) {
    SETDET_CHECK(gt.category_index.count(id) != 0, "--cat-ids: category id ", id,
                 " is not among the categories of ", o.gt);
  }
  for (const int64_t id : o.img_ids) {
    SETDET_CHECK(gt.image_index.count(id) != 0, "--img-ids: image id ", id,
                 " is not among the images of ", o.gt);
  }
  params.category_ids = o.cat_ids;
  params.image_ids = o.img_ids;
  params.use_cats = !o.class_agnostic;
  return params;
}

std::vector<ClassAp> per_class_ap(const CocoEvalResult& result, const CocoDataset& gt) {
  std::vector<ClassAp> table;
  const auto& ids = result.params.category_ids;
  for (size_t k = 0; k < result.num_k && k < ids.size(); ++k) {
    ClassAp row;
    row.id = ids[k];
    const auto it = gt.category_index.find(row.id);
    row.name =
        it != gt.category_index.end() ? gt.categories[it->second].name : std::to_string(row.id);
    row.ap = result.category_ap(k);
    row.ap50 = result.category_ap(k, 0.5);
    row.ap75 = result.category_ap(k, 0.75);
    table.push_back(std::move(row));
  }
  return table;
}

std::string format_ap(double v) {
  if (v <= -1.0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", v);
  return buf;
}

void print_per_class(const std::vector<ClassAp>& table) {
  size_t width = 8;
  for (const auto& row : table) width = std::max(width, row.name.size());
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%-*s %8s %8s %8s %8s\n", static_cast<int>(width), "category",
                "id", "AP", "AP50", "AP75");
  std::cout << buf;
  for (const auto& row : table) {
    std::snprintf(buf, sizeof(buf), "%-*s %8lld %8s %8s %8s\n", static_cast<int>(width),
                  row.name.c_str(), static_cast<long long>(row.id), format_ap(row.ap).c_str(),
                  format_ap(row.ap50).c_str(), format_ap(row.ap75).c_str());
    std::cout << buf;
  }
}

std::string result_json(const EvalOptions& o, const CocoEvalResult& result,
                        const std::vector<ClassAp>* table) {
  std::string s = "{\n  \"gt\": " + json_string(o.gt) + ",\n  \"dt\": " + json_string(o.dt) +
                  ",\n  \"stats\": [";
  for (size_t i = 0; i < result.stats.size(); ++i) {
    s += (i ? ", " : "") + json_number(result.stats[i]);
  }
  s += "]";
  const auto& names = coco_stat_names();
  for (size_t i = 0; i < names.size(); ++i) {
    s += ",\n  " + json_string(names[i]) + ": " + json_number(result.stats[i]);
  }
  s += ",\n  \"params\": {\"iou_thrs\": [";
  for (size_t i = 0; i < result.params.iou_thresholds.size(); ++i) {
    s += (i ? ", " : "") + json_number(result.params.iou_thresholds[i]);
  }
  s += "], \"max_dets\": [";
  for (size_t i = 0; i < result.params.max_dets.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(result.params.max_dets[i]);
  }
  s += "], \"area_rngs\": {";
  for (size_t i = 0; i < result.params.area_labels.size(); ++i) {
    s += (i ? ", " : "") + json_string(result.params.area_labels[i]) + ": [" +
         json_number(result.params.area_ranges[i][0]) + ", " +
         json_number(result.params.area_ranges[i][1]) + "]";
  }
  s += std::string("}, \"use_cats\": ") + (result.params.use_cats ? "true" : "false") + "}";
  if (table != nullptr) {
    s += ",\n  \"per_class\": [";
    for (size_t i = 0; i < table->size(); ++i) {
      const ClassAp& row = (*table)[i];
      s += std::string(i ? ",\n" : "\n") + "    {\"category_id\": " + std::to_string(row.id) +
           ", \"name\": " + json_string(row.name) + ", \"AP\": " + json_number(row.ap) +
           ", \"AP50\": " + json_number(row.ap50) + ", \"AP75\": " + json_number(row.ap75) + "}";
    }
    s += "\n  ]";
  }
  return s + "\n}\n";
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int run_eval(const EvalOptions& o) {
  SETDET_CHECK(!(o.per_class && o.class_agnostic),
               "--per-class needs per-category results and cannot be combined with "
               "--class-agnostic");
  const auto start = std::chrono::steady_clock::now();
  const CocoDataset gt = load_coco_instances(o.gt);
  const std::vector<CocoDetection> dets = load_coco_results(o.dt, &gt);
  const double load_s = seconds_since(start);

  const CocoEvalParams params = make_params(o, gt);
  const auto eval_start = std::chrono::steady_clock::now();
  const CocoEvalResult result = evaluate_coco(gt, dets, params);
  const double eval_s = seconds_since(eval_start);

  std::cout << format_coco_summary(result);
  std::vector<ClassAp> table;
  if (o.per_class) {
    table = per_class_ap(result, gt);
    std::cout << "\n";
    print_per_class(table);
  }
  std::cout.flush();
  if (!o.json.empty()) {
    write_file_atomic(o.json, result_json(o, result, o.per_class ? &table : nullptr));
  }
  if (!o.plot.empty()) {
    PrPlotOptions plot_opts;
    plot_opts.title = "Precision-recall: " + base_name(o.dt) +
                      " (area=all, maxDets=" + std::to_string(result.params.max_dets.back()) + ")";
    write_pr_plot_png(o.plot, coco_pr_curves(result), plot_opts);
  }
  std::fprintf(stderr,
               "setdet eval: %zu images, %zu ground truth, %zu detections; loaded in %.3f s, "
               "evaluated in %.3f s (%d threads)\n",
               gt.images.size(), gt.annotations.size(), dets.size(), load_s, eval_s, num_threads());
  return 0;
}

const RegisterCommand kEval{
    "eval", "COCO bbox evaluation (same numbers as pycocotools' COCOeval)", [](CLI::App& app) {
      auto o = std::make_shared<EvalOptions>();
      app.add_option("--gt", o->gt, "ground truth: COCO instances JSON")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--dt", o->dt,
                     "detections: COCO results JSON (list of {image_id, "
                     "category_id, bbox, score})")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--json", o->json,
                     "write the 12 stats (full precision, pycocotools' order, and by name) to "
                     "this JSON file");
      app.add_flag("--per-class", o->per_class, "print (and write to --json) per-category AP");
      app.add_option("--plot", o->plot,
                     "write precision-recall curves (one per IoU threshold) "
                     "to this PNG file");
      app.add_option("--iou-thrs", o->iou_thrs,
                     "IoU thresholds (default: 0.50:0.05:0.95 as np.linspace)")
          ->delimiter(',')
          ->check(kFinite);
      app.add_option("--max-dets", o->max_dets,
                     "max detections per image and category (default: 1 10 100; the summary "
                     "reports AR at the first three, pycocotools' AP line asks for 100)")
          ->delimiter(',');
      app.add_option("--area-rngs", o->area_rngs,
                     "area ranges LABEL=MIN:MAX, pixels^2, both ends inclusive (default: "
                     "all=0:1e10 small=0:1024 medium=1024:9216 large=9216:1e10)");
      app.add_option("--cat-ids", o->cat_ids, "evaluate only these category ids")->delimiter(',');
      app.add_option("--img-ids", o->img_ids, "evaluate only these image ids")->delimiter(',');
      app.add_flag("--class-agnostic", o->class_agnostic,
                   "pool all categories (pycocotools' useCats = 0)");
      return [o] { return run_eval(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
