// `setdet vrd ...`: visual relationship detection. The group's members register themselves with
// RegisterSubcommand{"vrd", ...} from their own files; `vrd eval` lives here.
//
// `setdet vrd eval --gt GT.csv --labels LABELS.csv --dt DT.csv [--json OUT.json]`: the Open
// Images VRD challenge metric (core/eval/vrd_eval.h), printed as the reference script writes its
// metrics file ("name,value" lines), then the challenge score.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "setdet/core/eval/vrd_eval.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/core/parallel.h"

namespace setdet::cli {
namespace {

struct VrdEvalOptions {
  std::string gt, labels, dt, json;
};

// Recall@K of a task for K in VrdEvalParams' default {50, 100}.
double recall_at(const VrdEvalResult& r, const VrdTaskResult& task, int64_t k) {
  for (size_t i = 0; i < r.params.recall_at.size(); ++i) {
    if (r.params.recall_at[i] == k) return task.recall_at[i];
  }
  return 0.0;
}

// The reference's metric names: VRDMetric_<Task>_<metric>@0.5IOU.
std::string metric_lines(const VrdEvalResult& r, const VrdTaskResult& task, const char* prefix) {
  std::string s;
  char buf[64];
  const auto line = [&](const std::string& name, double v) {
    std::snprintf(buf, sizeof(buf), ",%.6f\n", v);
    s += std::string("VRDMetric_") + prefix + "_" + name + buf;
  };
  line("weightedAP@0.5IOU", task.weighted_ap);
  line("mAP@0.5IOU", task.mean_ap);
  line("Recall@50@0.5IOU", recall_at(r, task, 50));
  line("Recall@100@0.5IOU", recall_at(r, task, 100));
  for (const auto& [predicate, ap] : task.ap_per_predicate) line("AP@0.5IOU/" + predicate, ap);
  return s;
}

std::string ap_object(const VrdTaskResult& task) {
  std::string s = "{";
  for (const auto& [predicate, ap] : task.ap_per_predicate) {
    s += (s.size() > 1 ? ", " : "") + json_string(predicate) + ": " + json_number(ap);
  }
  return s + "}";
}

std::string result_json(const VrdEvalOptions& o, const VrdEvalResult& r) {
  const auto& rel = r.relationship;
  const auto& phr = r.phrase;
  std::string s = "{\n";
  const auto add = [&s](const char* key, const std::string& value) {
    s += std::string(s.size() > 2 ? ",\n" : "") + "  \"" + key + "\": " + value;
  };
  add("mAP_relationship", json_number(rel.mean_ap));
  add("recall50_relationship", json_number(recall_at(r, rel, 50)));
  add("mAP_phrase", json_number(phr.mean_ap));
  add("recall50_phrase", json_number(recall_at(r, phr, 50)));
  add("score", json_number(r.challenge_score()));
  add("AP_relationship_per_predicate", ap_object(rel));
  add("AP_phrase_per_predicate", ap_object(phr));
  add("weightedAP_relationship", json_number(rel.weighted_ap));
  add("recall100_relationship", json_number(recall_at(r, rel, 100)));
  add("weightedAP_phrase", json_number(phr.weighted_ap));
  add("recall100_phrase", json_number(recall_at(r, phr, 100)));
  add("num_images", std::to_string(r.num_images));
  add("num_ground_truth", std::to_string(r.num_ground_truth));
  add("num_detections", std::to_string(r.num_detections));
  add("num_kept_detections", std::to_string(r.num_kept_detections));
  add("gt", json_string(o.gt));
  add("labels", json_string(o.labels));
  add("dt", json_string(o.dt));
  return s + "\n}\n";
}

int run_vrd_eval(const VrdEvalOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  VrdData data;
  read_vrd_ground_truth(o.gt, data);
  read_vrd_image_labels(o.labels, data);
  read_vrd_detections(o.dt, data);
  const auto loaded = Clock::now();
  const VrdEvalResult r = evaluate_vrd(data);
  const auto evaluated = Clock::now();

  std::string out = metric_lines(r, r.relationship, "Relationships");
  out += metric_lines(r, r.phrase, "Phrases");
  char buf[160];
  std::snprintf(buf, sizeof(buf),
                "challenge score (0.4 mAP_relationship + 0.2 Recall@50_relationship + 0.4 "
                "mAP_phrase),%.6f\n",
                r.challenge_score());
  std::cout << out << buf;
  std::cout.flush();
  if (r.num_ground_truth == 0) {
    std::fprintf(stderr,
                 "setdet vrd eval: warning: %s has no ground-truth relationships; "
                 "the metrics are reported as 0\n",
                 o.gt.c_str());
  }
  if (!o.json.empty()) write_file_atomic(o.json, result_json(o, r));
  const auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  std::fprintf(stderr,
               "setdet vrd eval: %lld images, %lld ground-truth relationships, %lld detections "
               "(%lld kept); loaded in %.3f s, evaluated in %.3f s (%d threads)\n",
               static_cast<long long>(r.num_images), static_cast<long long>(r.num_ground_truth),
               static_cast<long long>(r.num_detections),
               static_cast<long long>(r.num_kept_detections), seconds(start, loaded),
               seconds(loaded, evaluated), num_threads());
  return 0;
}

const RegisterCommand kVrd{"vrd", "visual relationship detection (Open Images VRD format)",
                           [](CLI::App& app) { return add_subcommands(app, "vrd"); }};

const RegisterSubcommand kVrdEval{
    "vrd", "eval",
    "the Open Images VRD challenge metric (as TensorFlow object_detection's "
    "oid_vrd_challenge_evaluation.py): relationship and phrase mAP, Recall@50, the score",
    [](CLI::App& app) {
      auto o = std::make_shared<VrdEvalOptions>();
      app.add_option("--gt", o->gt,
                     "ground-truth relationships CSV: ImageID, LabelName1, LabelName2, XMin1, "
                     "XMax1, YMin1, YMax1, XMin2, XMax2, YMin2, YMax2, RelationshipLabel")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--labels", o->labels,
                     "image-level labels CSV: ImageID, LabelName (Confidence is not read)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--dt", o->dt, "detections CSV: the ground-truth columns + Score")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--json", o->json,
                     "write mAP / Recall@50 of both tasks, the score and per-predicate AP to "
                     "this JSON file");
      return [o] { return run_vrd_eval(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
