#include "setdet/vrd/pipeline.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/utils.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <numeric>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/core/parallel.h"
#include "setdet/data/coco_dataset.h"
#include "setdet/data/image_io.h"
#include "setdet/data/random.h"
#include "setdet/engine/autocast.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/io/pth.h"
#include "setdet/vrd/pair_features.h"
#include "setdet/vrd/relationship_drawing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kHoldOutStream = 0x484f4c44ULL;  // "HOLD"
constexpr uint64_t kNegativeStream = 0x4e4547ULL;   // "NEG"

template <typename... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  std::cerr << "[vrd] " << fmt::format(f, std::forward<Args>(args)...) << std::endl;
}

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---- config ----

VrdSplitFiles split_files(const Config& data, const std::string& name, const std::string& root,
                          bool relationships_required) {
  const Config s = data[name];
  s.check_keys({"instances", "images", "relationships"});
  VrdSplitFiles f;
  f.instances = path_under_root(root, s.get<std::string>("instances"));
  f.images = path_under_root(root, s.get<std::string>("images"));
  if (relationships_required || s.has("relationships")) {
    f.relationships = path_under_root(root, s.get<std::string>("relationships"));
  }
  return f;
}

VrdDetectorSpec detector_spec(const Config& node) {
  node.check_keys({"config", "checkpoint", "weight"});
  VrdDetectorSpec d;
  d.config = node.get<std::string>("config");
  d.checkpoint = node.get<std::string>("checkpoint");
  d.weight = node.get<double>("weight", 1.0);
  SETDET_CHECK(d.weight > 0, node.where(), ".weight: expected > 0, got ", d.weight);
  return d;
}

bool boxes_are_gt(const Config& node, const std::string& fallback) {
  const std::string v = node.get<std::string>("boxes", fallback);
  SETDET_CHECK(v == "gt" || v == "detections", node.where(),
               ".boxes: expected gt or detections, got '", v, "'");
  return v == "gt";
}

double fraction(const Config& node, const std::string& key, double fallback) {
  const double v = node.get<double>(key, fallback);
  SETDET_CHECK(v > 0.0 && v < 1.0, node.where(), ".", key, ": expected a fraction in (0, 1), got ",
               v);
  return v;
}

}  // namespace

VrdPipelineConfig VrdPipelineConfig::load(const std::string& file,
                                          const std::vector<std::string>& overrides,
                                          const std::string& work_dir) {
  Config cfg = Config::load(file);
  for (const auto& s : overrides) cfg.set_override(s);
  cfg.check_keys({"work_dir", "data", "stage1", "stage2", "stage3", "output"});
  VrdPipelineConfig c;
  c.file = file;
  YAML::Emitter yaml;
  yaml << cfg.node();
  c.yaml = std::string(yaml.c_str()) + "\n";
  c.work_dir = !work_dir.empty()
                   ? work_dir
                   : cfg.get<std::string>("work_dir",
                                          (fs::path("work_dirs") / fs::path(file).stem()).string());

  const Config data = cfg["data"];
  data.check_keys({"root", "train", "val", "test"});
  const auto root = data.get<std::string>("root", "");
  c.train = split_files(data, "train", root, true);
  c.val = split_files(data, "val", root, true);
  c.test = split_files(data, "test", root, false);

  const Config s1 = cfg["stage1"];
  s1.check_keys({"objects", "fusion", "attributes", "separator", "plain", "score_threshold",
                 "max_objects", "batch_size", "attribute_min_score", "attribute_max_per_image"});
  const Config objects = s1["objects"];
  SETDET_CHECK(objects.is_sequence() && objects.size() > 0, objects.where(),
               ": expected a list of {config, checkpoint, weight}");
  for (size_t i = 0; i < objects.size(); ++i) c.objects.push_back(detector_spec(objects.at(i)));
  if (const auto f = s1.find("fusion")) {
    f->check_keys({"iou_threshold", "skip_box_threshold", "conf_type"});
    c.fusion.iou_threshold = f->get<double>("iou_threshold", c.fusion.iou_threshold);
    c.fusion.skip_box_threshold = f->get<double>("skip_box_threshold", c.fusion.skip_box_threshold);
    if (f->has("conf_type"))
      c.fusion.conf_type = parse_wbf_conf_type(f->get<std::string>("conf_type"));
  }
  if (const auto a = s1.find("attributes")) c.attributes = detector_spec(*a);
  c.separator = s1.get<std::string>("separator", c.separator);
  c.plain = s1.get<std::string>("plain", c.plain);
  c.score_threshold = s1.get<float>("score_threshold", c.score_threshold);
  c.max_objects = s1.get<int32_t>("max_objects", c.max_objects);
  c.detector_batch_size = s1.get<int64_t>("batch_size", c.detector_batch_size);
  c.attribute_min_score = s1.get<float>("attribute_min_score", c.attribute_min_score);
  c.attribute_max_per_image = s1.get<int64_t>("attribute_max_per_image", c.attribute_max_per_image);
  SETDET_CHECK(c.max_objects >= 2, s1.where(), ".max_objects: expected >= 2, got ", c.max_objects);
  SETDET_CHECK(c.detector_batch_size >= 1, s1.where(), ".batch_size: expected >= 1, got ",
               c.detector_batch_size);

  const Config s2 = cfg["stage2"];
  s2.check_keys({"boxes", "validation_fraction", "negative_fraction", "seed", "spatial", "visual"});
  c.stage2_gt_boxes = boxes_are_gt(s2, "gt");
  c.stage2_validation_fraction = fraction(s2, "validation_fraction", c.stage2_validation_fraction);
  c.negative_fraction = s2.get<double>("negative_fraction", c.negative_fraction);
  SETDET_CHECK(c.negative_fraction > 0.0 && c.negative_fraction <= 1.0, s2.where(),
               ".negative_fraction: expected a fraction in (0, 1], got ", c.negative_fraction);
  c.stage2_seed = s2.get<uint64_t>("seed", 0);
  c.spatial = GbmOptions::from_config(s2["spatial"]);
  const Config v = s2["visual"];
  v.check_keys({"backbone", "init_backbone", "crop_size", "mask", "hidden", "dropout", "batch_size",
                "epochs", "max_iters", "autocast", "log_interval", "optimizer",
                "lr_schedule"});
  c.visual_backbone = v["backbone"];
  if (const auto init = v.find("init_backbone")) {
    init->check_keys({"checkpoint", "prefix"});
    c.init_backbone_checkpoint = init->get<std::string>("checkpoint");
    c.init_backbone_prefix = init->get<std::string>("prefix", c.init_backbone_prefix);
  }
  c.visual.crop.size = v.get<int>("crop_size", c.visual.crop.size);
  SETDET_CHECK(c.visual.crop.size >= 16, v.where(), ".crop_size: expected >= 16, got ",
               c.visual.crop.size);
  c.visual.crop.mask = parse_crop_mask(v.get<std::string>("mask", "hull"), v.where() + ".mask");
  if (v.has("hidden")) {
    const auto h = v.get<std::vector<int64_t>>("hidden");
    SETDET_CHECK(h.size() == 2, v["hidden"].where(),
                 ": expected the two hidden widths of the 3-layer MLP, got ", h.size(), " values");
    c.visual_hidden = {h[0], h[1]};
  }
  c.visual_dropout = v.get<double>("dropout", c.visual_dropout);
  c.visual.batch_size = v.get<int64_t>("batch_size", c.visual.batch_size);
  c.visual.epochs = v.get<int64_t>("epochs", c.visual.epochs);
  c.visual.max_iters = v.get<int64_t>("max_iters", 0);
  c.visual.log_interval = v.get<int64_t>("log_interval", c.visual.log_interval);
  SETDET_CHECK(c.visual.log_interval >= 1, v.where(), ".log_interval: expected >= 1");
  c.visual.autocast =
      parse_autocast(v.get<std::string>("autocast", "off"), v.where() + ".autocast");
  c.visual.optimizer = v["optimizer"];
  c.visual.lr_schedule = v.find("lr_schedule");
  c.visual.seed = c.stage2_seed;

  const Config s3 = cfg["stage3"];
  s3.check_keys({"boxes", "validation_fraction", "seed", "xgboost"});
  c.stage3_gt_boxes = boxes_are_gt(s3, "detections");
  c.stage3_validation_fraction = fraction(s3, "validation_fraction", c.stage3_validation_fraction);
  c.stage3_seed = s3.get<uint64_t>("seed", 0);
  c.stage3 = GbmOptions::from_config(s3["xgboost"]);

  if (const auto out = cfg.find("output")) {
    out->check_keys({"min_score", "max_per_image"});
    c.min_score = out->get<float>("min_score", c.min_score);
    c.max_per_image = out->get<int64_t>("max_per_image", c.max_per_image);
  }
  return c;
}

const std::vector<std::string>& vrd_variants() {
  static const std::vector<std::string> v{"spatial", "visual", "average", "stage3"};
  return v;
}

namespace {

// ---- candidate pairs ----

struct PairTable {
  int64_t num_features = 0, num_predicates = 0;
  std::vector<int32_t> image;
  std::vector<std::array<int32_t, 2>> pair;
  std::vector<float> features;  // [rows, num_features]
  std::vector<uint8_t> labels;  // [rows, num_predicates]; empty without ground truth
  int64_t rows() const { return static_cast<int64_t>(image.size()); }
};

// The objects of each image the relationship models see: the highest-scoring ones.
std::vector<VrdObject> strongest(std::vector<VrdObject> objects, float min_score,
                                 int32_t max_objects) {
  std::stable_sort(objects.begin(), objects.end(),
                   [](const VrdObject& a, const VrdObject& b) { return a.score > b.score; });
  while (!objects.empty() &&
         (objects.back().score < min_score || static_cast<int32_t>(objects.size()) > max_objects)) {
    objects.pop_back();
  }
  return objects;
}

PairTable build_pair_table(const VrdSplit& split,
                           const std::vector<std::vector<VrdObject>>& objects,
                           const PairStatistics& stats, bool gt_objects, bool with_labels) {
  PairTable t;
  t.num_predicates = static_cast<int64_t>(split.predicates.size());
  t.num_features = static_cast<int64_t>(pair_feature_names(split.predicates).size());
  for (size_t i = 0; i < split.images.size(); ++i) {
    const auto& obj = objects[i];
    const auto pairs = candidate_pairs(obj, -INFINITY, static_cast<int32_t>(obj.size()));
    const size_t first = t.features.size();
    t.features.resize(first + pairs.size() * static_cast<size_t>(t.num_features));
    for (size_t k = 0; k < pairs.size(); ++k) {
      pair_features(obj, pairs[k][0], pairs[k][1], stats,
                    t.features.data() + first + k * static_cast<size_t>(t.num_features));
      t.image.push_back(static_cast<int32_t>(i));
      t.pair.push_back(pairs[k]);
    }
    if (with_labels) {
      const auto matches = gt_objects ? std::vector<std::vector<int32_t>>{}
                                      : match_to_ground_truth(obj, split.images[i]);
      const auto labels = pair_labels(split.images[i], pairs, matches, t.num_predicates);
      t.labels.insert(t.labels.end(), labels.begin(), labels.end());
    }
  }
  return t;
}

// Images held out for early stopping: round(fraction n) of them, drawn by Rng(seed).
std::vector<bool> held_out_images(size_t n, double fraction, uint64_t seed) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng({seed, kHoldOutStream});
  shuffle(order, rng);
  std::vector<bool> held(n, false);
  const auto count = static_cast<size_t>(std::llround(fraction * static_cast<double>(n)));
  for (size_t k = 0; k < count && k < n; ++k) held[static_cast<size_t>(order[k])] = true;
  return held;
}

// The stage-2 training pairs, shared by the spatial and the visual models as in the paper: every
// pair with a relationship, and each other pair with probability `negative_fraction` (drawn per
// row by Rng(seed), so the choice is a pure function of the table and the seed).
std::vector<bool> sampled_pairs(const PairTable& t, double negative_fraction, uint64_t seed) {
  const int64_t P = t.num_predicates;
  std::vector<bool> keep(static_cast<size_t>(t.rows()), true);
  if (negative_fraction >= 1.0) return keep;
  for (int64_t r = 0; r < t.rows(); ++r) {
    const uint8_t* y = t.labels.data() + r * P;
    if (std::any_of(y, y + P, [](uint8_t v) { return v != 0; })) continue;
    Rng rng({seed, kNegativeStream, static_cast<uint64_t>(r)});
    keep[static_cast<size_t>(r)] = rng.uniform() < negative_fraction;
  }
  return keep;
}

std::vector<float> gather_rows(const std::vector<float>& m, int64_t cols,
                               const std::vector<int64_t>& rows) {
  std::vector<float> out(rows.size() * static_cast<size_t>(cols));
  for (size_t k = 0; k < rows.size(); ++k) {
    std::copy_n(m.begin() + rows[k] * cols, cols, out.begin() + static_cast<int64_t>(k) * cols);
  }
  return out;
}

std::vector<float> label_column(const PairTable& t, const std::vector<int64_t>& rows, int64_t p) {
  std::vector<float> out(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) out[k] = t.labels[rows[k] * t.num_predicates + p];
  return out;
}

// Average precision of scores for 0 / 1 labels (mean over the positives of the precision at their
// rank; ties ranked by position): how well a model ranks the candidate pairs of a held-out set.
double pair_average_precision(const std::vector<float>& scores, const std::vector<float>& labels) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  double hits = 0.0, sum = 0.0;
  for (size_t k = 0; k < order.size(); ++k) {
    if (labels[order[k]] > 0.5f) sum += ++hits / static_cast<double>(k + 1);
  }
  return hits > 0 ? sum / hits : 0.0;
}

std::string model_file(const VrdPipelineConfig& c, const std::string& stage,
                       const std::string& name) {
  return (fs::path(c.work_dir) / stage / name).string();
}

// Trains (or, resuming, loads) one binary model per predicate on the `keep` rows of `x`
// ([rows, cols]; empty `keep`: every row), early-stopping on those of held-out images.
std::vector<XgbBooster> train_predicate_models(const VrdPipelineConfig& c, const std::string& stage,
                                               const std::string& label, const std::string& prefix,
                                               const GbmOptions& options,
                                               const std::vector<float>& x, int64_t cols,
                                               const PairTable& t, const std::vector<bool>& held,
                                               const std::vector<bool>& keep,
                                               const std::vector<std::string>& predicates,
                                               bool resume) {
  std::vector<int64_t> fit_rows, val_rows;
  for (int64_t r = 0; r < t.rows(); ++r) {
    if (keep.empty() || keep[static_cast<size_t>(r)])
      (held[t.image[r]] ? val_rows : fit_rows).push_back(r);
  }
  say("{}: {} pairs to fit ({} images), {} for early stopping ({} images), {} features", label,
      fit_rows.size(), std::count(held.begin(), held.end(), false), val_rows.size(),
      std::count(held.begin(), held.end(), true), cols);
  XgbMatrix fit(gather_rows(x, cols, fit_rows), cols, label + " features (fit)");
  XgbMatrix val(gather_rows(x, cols, val_rows), cols, label + " features (early stopping)");
  std::vector<XgbBooster> models;
  for (size_t p = 0; p < predicates.size(); ++p) {
    const std::string path = model_file(c, stage, prefix + predicates[p] + ".json");
    if (resume && fs::exists(path)) {
      models.push_back(XgbBooster::load(path));
      say("{} '{}': loaded {}", label, predicates[p], path);
      continue;
    }
    const auto start = Clock::now();
    fit.set_labels(label_column(t, fit_rows, static_cast<int64_t>(p)));
    val.set_labels(label_column(t, val_rows, static_cast<int64_t>(p)));
    int last_printed = 0;
    GbmTrainResult r = train_binary_gbm(options, fit, val, [&](const GbmProgress& g) {
      if (g.round - last_printed < std::max(1, g.num_rounds / 10)) return;
      last_printed = g.round;
      say("{} '{}': round {}/{}  val {} {:.5f}  (best {:.5f} at {})", label, predicates[p], g.round,
          g.num_rounds, options.eval_metric, g.val_metric, g.best_metric, g.best_round);
    });
    r.booster.save(path);
    const std::vector<float> labels = label_column(t, val_rows, static_cast<int64_t>(p));
    say("{} '{}': {} positives of {}; kept {} of {} rounds, best val {} {:.5f}, val pair AP "
        "{:.3f}; {:.1f} s -> {}",
        label, predicates[p], fit.positives(), fit.rows(), r.best_rounds, r.rounds_run,
        options.eval_metric, r.best_metric, pair_average_precision(r.booster.predict(val), labels),
        since(start), path);
    models.push_back(std::move(r.booster));
  }
  return models;
}

// [rows, P] probabilities of the per-predicate models on `x`.
std::vector<float> predict_predicates(const std::vector<XgbBooster>& models,
                                      const std::vector<float>& x, int64_t cols,
                                      const std::string& what) {
  const auto P = static_cast<int64_t>(models.size());
  const int64_t rows = cols > 0 ? static_cast<int64_t>(x.size()) / cols : 0;
  std::vector<float> out(static_cast<size_t>(rows * P));
  if (rows == 0) return out;
  const XgbMatrix m(x, cols, what);
  for (int64_t p = 0; p < P; ++p) {
    const std::vector<float> col = models[static_cast<size_t>(p)].predict(m);
    for (int64_t r = 0; r < rows; ++r) out[r * P + p] = col[static_cast<size_t>(r)];
  }
  return out;
}

// ---- stage 1 ----

std::vector<std::vector<VrdObject>> ground_truth_objects(const VrdSplit& split) {
  std::vector<std::vector<VrdObject>> out;
  for (const auto& im : split.images) out.push_back(im.objects);
  return out;
}

DetectorRun run_logged(const VrdDetectorSpec& spec, const VrdSplit& split,
                       const VrdPipelineConfig& c, const std::string& what) {
  say("stage 1: {} ({}) on {} images", what, spec.checkpoint, split.images.size());
  int64_t next = 0;
  DetectorRun run =
      run_detector(spec, split.images, c.detector_batch_size, [&](int64_t done, int64_t total) {
        if (done >= next || done == total) {
          say("stage 1: {}: {}/{} images", what, done, total);
          next = done + std::max<int64_t>(total / 5, 1);
        }
      });
  int64_t detections = 0;
  for (const auto& im : run.images) detections += static_cast<int64_t>(im.size());
  say("stage 1: {}: {} detections in {:.1f} s", what, detections, run.seconds);
  return run;
}

std::vector<std::vector<VrdObject>> detected_objects(const VrdPipelineConfig& c,
                                                     const VrdSplit& split) {
  std::vector<DetectorRun> runs;
  std::vector<double> weights;
  for (size_t d = 0; d < c.objects.size(); ++d) {
    runs.push_back(run_logged(c.objects[d], split, c, "object detector " + std::to_string(d)));
    weights.push_back(c.objects[d].weight);
  }
  if (runs.size() > 1) {
    say("stage 1: {} detectors fused by weighted boxes fusion (iou {:.2f})", runs.size(),
        c.fusion.iou_threshold);
  }
  auto objects = objects_from_detections(runs, weights, c.fusion, split.classes, c.separator);
  int64_t kept = 0;
  for (auto& o : objects) {
    o = strongest(std::move(o), c.score_threshold, c.max_objects);
    kept += static_cast<int64_t>(o.size());
  }
  say("stage 1: {} objects kept (score >= {}, at most {} per image), {:.2f} per image", kept,
      c.score_threshold, c.max_objects,
      static_cast<double>(kept) / std::max<size_t>(split.images.size(), 1));
  return objects;
}

// ---- stage 2: the visual model ----

std::vector<cv::Mat> decode_images(const VrdSplit& split) {
  std::vector<cv::Mat> images(split.images.size());
  ScopedOpenCvSerial serial;
  parallel_for(0, static_cast<int64_t>(images.size()), 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto& rec = split.images[static_cast<size_t>(i)];
      images[static_cast<size_t>(i)] = read_image(rec.path);
      SETDET_CHECK(images[i].cols == rec.width && images[i].rows == rec.height, rec.path,
                   ": decoded size ", images[i].cols, "x", images[i].rows, " differs from ",
                   rec.width, "x", rec.height, " in the instances file");
    }
  });
  return images;
}

VisualPair visual_pair(const VrdSplit& split, const std::vector<std::vector<VrdObject>>& objects,
                       const PairTable& t, int64_t row) {
  const int32_t i = t.image[row];
  const auto& rec = split.images[static_cast<size_t>(i)];
  const auto pixels = [&](const std::array<float, 4>& b) {
    const float w = static_cast<float>(rec.width), h = static_cast<float>(rec.height);
    return std::array<float, 4>{b[0] * w, b[1] * h, b[2] * w, b[3] * h};
  };
  VisualPair p;
  p.image = i;
  p.subject = pixels(objects[i][t.pair[row][0]].box);
  p.object = pixels(objects[i][t.pair[row][1]].box);
  return p;
}

VisualRelationNet make_visual_net(const VrdPipelineConfig& c, int64_t num_predicates) {
  torch::manual_seed(c.stage2_seed);
  return VisualRelationNet(c.visual_backbone, num_predicates, c.visual_hidden, c.visual_dropout);
}

std::vector<float> visual_probabilities(VisualRelationNet& net, const VrdSplit& split,
                                        const std::vector<std::vector<VrdObject>>& objects,
                                        const PairTable& t, const VrdPipelineConfig& c,
                                        const std::string& what) {
  const auto start = Clock::now();
  const std::vector<cv::Mat> images = decode_images(split);
  std::vector<VisualPair> pairs;
  for (int64_t r = 0; r < t.rows(); ++r) pairs.push_back(visual_pair(split, objects, t, r));
  std::vector<float> probs = predict_visual(net, images, pairs, c.visual.crop);
  say("stage 2 visual: {} pairs of {} scored in {:.1f} s", pairs.size(), what, since(start));
  return probs;
}

// ---- stage 3 ----

std::vector<std::string> stage3_feature_names(const std::vector<std::string>& predicates) {
  std::vector<std::string> names = pair_feature_names(predicates);
  names.emplace_back("subject_score");
  names.emplace_back("object_score");
  for (const auto& p : predicates) names.push_back("spatial_" + p);
  for (const auto& p : predicates) names.push_back("visual_" + p);
  return names;
}

// What a relationship model's probability for the pair (subject, object) is multiplied by in the
// output: both detection scores when the model learned on ground-truth boxes (it has never seen a
// false or duplicate detection; the product ranks them low), else 1 (it learned from detections
// and their scores).
float detection_factor(const VrdObject& subject, const VrdObject& object, bool gt_trained) {
  return gt_trained ? subject.score * object.score : 1.0f;
}

// The stage-3 inputs of each pair: its features, the two detection scores, and the stage-2
// predictions as the spatial and visual variants report them (times detection_factor).
std::vector<float> stage3_features(const PairTable& t,
                                   const std::vector<std::vector<VrdObject>>& objects,
                                   const std::vector<float>& spatial,
                                   const std::vector<float>& visual, bool stage2_gt_boxes) {
  const int64_t F = t.num_features, P = t.num_predicates, cols = F + 2 + 2 * P;
  std::vector<float> x(static_cast<size_t>(t.rows() * cols));
  for (int64_t r = 0; r < t.rows(); ++r) {
    float* out = x.data() + r * cols;
    std::copy_n(t.features.begin() + r * F, F, out);
    const auto& obj = objects[static_cast<size_t>(t.image[r])];
    const VrdObject& subject = obj[static_cast<size_t>(t.pair[r][0])];
    const VrdObject& object = obj[static_cast<size_t>(t.pair[r][1])];
    out[F] = subject.score;
    out[F + 1] = object.score;
    const float boxes = detection_factor(subject, object, stage2_gt_boxes);
    for (int64_t p = 0; p < P; ++p) {
      out[F + 2 + p] = spatial[static_cast<size_t>(r * P + p)] * boxes;
      out[F + 2 + P + p] = visual[static_cast<size_t>(r * P + p)] * boxes;
    }
  }
  return x;
}

// ---- model manifest ----

std::string manifest_json(const VrdPipelineConfig& c, const VrdSplit& train) {
  const auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_string(v[i]);
    return s + "]";
  };
  return "{\n  \"config\": " + json_string(c.file) + ",\n  \"classes\": " + list(train.classes) +
         ",\n  \"predicates\": " + list(train.predicates) +
         ",\n  \"stage2_boxes\": " + json_string(c.stage2_gt_boxes ? "gt" : "detections") +
         ",\n  \"stage3_boxes\": " + json_string(c.stage3_gt_boxes ? "gt" : "detections") +
         ",\n  \"spatial_features\": " + list(pair_feature_names(train.predicates)) +
         ",\n  \"stage3_features\": " + list(stage3_feature_names(train.predicates)) + "\n}\n";
}

struct Manifest {
  std::vector<std::string> classes, predicates;
  bool stage2_gt_boxes = true, stage3_gt_boxes = false;
};

Manifest read_manifest(const VrdPipelineConfig& c) {
  const std::string path = (fs::path(c.work_dir) / "vrd_model.json").string();
  SETDET_CHECK(fs::exists(path), path, ": no trained pipeline in ", c.work_dir,
               " (run `setdet vrd train ", c.file, "` first)");
  const Config m = Config::load(path);
  Manifest out;
  out.classes = m.get<std::vector<std::string>>("classes");
  out.predicates = m.get<std::vector<std::string>>("predicates");
  out.stage2_gt_boxes = m.get<std::string>("stage2_boxes") == "gt";
  out.stage3_gt_boxes = m.get<std::string>("stage3_boxes") == "gt";
  SETDET_CHECK(
      m.get<std::vector<std::string>>("spatial_features") == pair_feature_names(out.predicates),
      path, ": spatial_features differ from this build's features (retrain)");
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SETDET_CHECK(in.good(), path, ": cannot be opened");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

NamedTensors weights_of(const std::string& path) {
  return is_torchscript_archive(path) ? checkpoint_model_tensors(path) : load_pth_state_dict(path);
}

}  // namespace

void train_vrd_pipeline(const VrdPipelineConfig& c, const VrdTrainOptions& options) {
  const auto start = Clock::now();
  fs::create_directories(fs::path(c.work_dir) / "stage2");
  fs::create_directories(fs::path(c.work_dir) / "stage3");
  write_file_atomic((fs::path(c.work_dir) / "config.yaml").string(), c.yaml);

  say("reading the training split ({}) and the held-apart split ({})", c.train.relationships,
      c.val.relationships);
  const VrdSplit train = read_vrd_split(c.train);
  const VrdSplit val = read_vrd_split(c.val, train.predicates);
  SETDET_CHECK(val.classes == train.classes, c.val.instances,
               ": the object classes differ from the training split's");
  const auto P = static_cast<int64_t>(train.predicates.size());
  SETDET_CHECK(P > 0, c.train.relationships, ": no pair relationships (only 'is' rows?)");
  std::string names;
  for (const auto& p : train.predicates) names += (names.empty() ? "" : ", ") + p;
  say("{} training images, {} held-apart images, {} classes, predicates: {}", train.images.size(),
      val.images.size(), train.classes.size(), names);

  // ---- stage 2 ----
  const PairStatistics stats = PairStatistics::from_split(train);
  write_file_atomic(model_file(c, "stage2", "pair_statistics.json"), stats.to_json());
  const auto train_objects =
      c.stage2_gt_boxes ? ground_truth_objects(train) : detected_objects(c, train);
  const PairTable t2 = build_pair_table(train, train_objects, stats, c.stage2_gt_boxes, true);
  say("stage 2: {} candidate pairs on the training split ({} boxes)", t2.rows(),
      c.stage2_gt_boxes ? "ground-truth" : "detected");

  const auto spatial_start = Clock::now();
  const std::vector<bool> held2 =
      held_out_images(train.images.size(), c.stage2_validation_fraction, c.stage2_seed);
  const std::vector<bool> sampled2 = sampled_pairs(t2, c.negative_fraction, c.stage2_seed);
  say("stage 2: {} of them train both models (those with a relationship and {:.0f}% of the "
      "others)",
      std::count(sampled2.begin(), sampled2.end(), true), 100 * c.negative_fraction);
  const std::vector<XgbBooster> spatial = train_predicate_models(
      c, "stage2", "stage 2 spatial", "spatial_", c.spatial, t2.features, t2.num_features, t2,
      held2, sampled2, train.predicates, options.resume);
  say("stage 2 spatial: {:.1f} s", since(spatial_start));

  const auto visual_start = Clock::now();
  VisualRelationNet net = make_visual_net(c, P);
  const std::string visual_path = model_file(c, "stage2", "visual.pt");
  if (options.resume && fs::exists(visual_path)) {
    load_checkpoint(visual_path, *net);
    say("stage 2 visual: loaded {}", visual_path);
  } else {
    if (!c.init_backbone_checkpoint.empty()) {
      const int64_t n =
          load_backbone_weights(c.init_backbone_checkpoint, weights_of(c.init_backbone_checkpoint),
                                c.init_backbone_prefix, net->backbone());
      say("stage 2 visual: backbone initialised from {} ({} tensors under '{}')",
          c.init_backbone_checkpoint, n, c.init_backbone_prefix);
    }
    std::vector<VisualPair> pairs;
    for (int64_t r = 0; r < t2.rows(); ++r) {
      if (!sampled2[static_cast<size_t>(r)]) continue;
      const uint8_t* y = t2.labels.data() + r * P;
      VisualPair p = visual_pair(train, train_objects, t2, r);
      p.labels.assign(y, y + P);
      pairs.push_back(std::move(p));
    }
    say("stage 2 visual: {} training pairs, crops {}x{} ({} mask)", pairs.size(),
        c.visual.crop.size, c.visual.crop.size,
        c.visual.crop.mask == CropMask::kHull ? "hull" : "boxes");
    const std::vector<cv::Mat> images = decode_images(train);
    train_visual_model(net, images, pairs, c.visual, [&](const VisualTrainProgress& p) {
      const double eta = p.iter > 0 ? p.seconds / static_cast<double>(p.iter) *
                                          static_cast<double>(p.max_iters - p.iter)
                                    : 0.0;
      say("stage 2 visual: iter {}/{} (epoch {})  loss {:.4f}  lr {:.2e}  {:.0f} pairs/s  "
          "eta {:.0f} s",
          p.iter, p.max_iters, p.epoch, p.loss, p.lr, p.pairs_per_second, eta);
    });
    TrainState state;
    save_checkpoint(visual_path, *net, nullptr, state, {"", c.yaml});
    say("stage 2 visual: {:.1f} s -> {}", since(visual_start), visual_path);
  }

  // ---- stage 3 ----
  const auto stage3_start = Clock::now();
  const auto val_objects = c.stage3_gt_boxes ? ground_truth_objects(val) : detected_objects(c, val);
  const PairTable t3 = build_pair_table(val, val_objects, stats, c.stage3_gt_boxes, true);
  say("stage 3: {} candidate pairs on the held-apart split ({} boxes)", t3.rows(),
      c.stage3_gt_boxes ? "ground-truth" : "detected");
  const std::vector<float> sp = predict_predicates(spatial, t3.features, t3.num_features,
                                                   "spatial features (held-apart split)");
  const std::vector<float> vi =
      visual_probabilities(net, val, val_objects, t3, c, "the held-apart split");
  const std::vector<float> x3 = stage3_features(t3, val_objects, sp, vi, c.stage2_gt_boxes);
  const int64_t cols3 = static_cast<int64_t>(stage3_feature_names(train.predicates).size());
  for (int64_t p = 0; p < P; ++p) {  // the stage-2 variants' scores, as `vrd predict` writes them
    std::vector<float> labels(static_cast<size_t>(t3.rows())), a(labels.size()), b(labels.size()),
        avg(labels.size());
    for (int64_t r = 0; r < t3.rows(); ++r) {
      labels[r] = t3.labels[r * P + p];
      a[r] = x3[r * cols3 + t3.num_features + 2 + p];
      b[r] = x3[r * cols3 + t3.num_features + 2 + P + p];
      avg[r] = 0.5f * (a[r] + b[r]);
    }
    say("stage 3 inputs '{}' on the held-apart pairs: pair AP spatial {:.3f}, visual {:.3f}, "
        "average {:.3f}",
        train.predicates[p], pair_average_precision(a, labels), pair_average_precision(b, labels),
        pair_average_precision(avg, labels));
  }
  const std::vector<bool> held3 =
      held_out_images(val.images.size(), c.stage3_validation_fraction, c.stage3_seed);
  train_predicate_models(c, "stage3", "stage 3", "stage3_", c.stage3, x3, cols3, t3, held3, {},
                         train.predicates, options.resume);
  say("stage 3: {:.1f} s", since(stage3_start));

  write_file_atomic((fs::path(c.work_dir) / "vrd_model.json").string(), manifest_json(c, train));
  say("trained in {:.1f} s -> {}", since(start), c.work_dir);
}

namespace {

struct OutputRow {
  int32_t image = 0;
  std::string label1, label2, predicate;
  std::array<float, 4> box1{}, box2{};
  float score = 0.0f;
};

// The shortest text that reads back as `v` (as a float).
std::string float_text(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string box_columns(const std::array<float, 4>& b) {  // XMin, XMax, YMin, YMax
  return float_text(b[0]) + "," + float_text(b[2]) + "," + float_text(b[1]) + "," +
         float_text(b[3]);
}

void write_rows(const std::string& path, const VrdSplit& split, std::vector<OutputRow> rows) {
  std::stable_sort(rows.begin(), rows.end(), [](const OutputRow& a, const OutputRow& b) {
    return a.image != b.image ? a.image < b.image : a.score > b.score;
  });
  std::string csv =
      "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,YMax2,"
      "RelationshipLabel,Score\n";
  for (const auto& r : rows) {
    csv += split.images[static_cast<size_t>(r.image)].id + "," + r.label1 + "," + r.label2 + "," +
           box_columns(r.box1) + "," + box_columns(r.box2) + "," + r.predicate + "," +
           float_text(r.score) + "\n";
  }
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  write_file_atomic(path, csv);
}

// The "is" rows of an attribute detector's run: its (class, attribute) detections, plain ones
// excluded.
std::vector<OutputRow> attribute_rows(const VrdPipelineConfig& c, const DetectorRun& run) {
  std::vector<OutputRow> rows;
  std::vector<std::pair<std::string, std::string>> names;
  for (const auto& n : run.class_names) names.push_back(split_class_name(n, c.separator));
  for (size_t i = 0; i < run.images.size(); ++i) {
    std::vector<OutputRow> image_rows;
    for (const auto& d : run.images[i]) {
      const auto& [cls, attribute] = names[static_cast<size_t>(d.label)];
      if (attribute.empty() || attribute == c.plain || d.score < c.attribute_min_score) continue;
      image_rows.push_back({static_cast<int32_t>(i), cls, attribute, "is", d.box, d.box, d.score});
    }
    std::stable_sort(image_rows.begin(), image_rows.end(),
                     [](const OutputRow& a, const OutputRow& b) { return a.score > b.score; });
    if (static_cast<int64_t>(image_rows.size()) > c.attribute_max_per_image) {
      image_rows.resize(static_cast<size_t>(c.attribute_max_per_image));
    }
    rows.insert(rows.end(), image_rows.begin(), image_rows.end());
  }
  return rows;
}

}  // namespace

void predict_vrd_pipeline(const VrdPipelineConfig& c, const VrdPredictOptions& o) {
  const auto start = Clock::now();
  const auto& variants = vrd_variants();
  SETDET_CHECK(std::find(variants.begin(), variants.end(), o.variant) != variants.end(),
               "--variant: expected spatial, visual, average or stage3, got '", o.variant, "'");
  SETDET_CHECK(!o.out.empty() || !o.variants_dir.empty() || !o.vis.empty(),
               "vrd predict: nothing to write (give --out, --variants-dir or --vis)");
  const Manifest m = read_manifest(c);
  const VrdSplitFiles* files = o.split == "train"  ? &c.train
                               : o.split == "val"  ? &c.val
                               : o.split == "test" ? &c.test
                                                   : nullptr;
  SETDET_CHECK(files != nullptr, "--split: expected train, val or test, got '", o.split, "'");
  VrdSplitFiles image_list = *files;
  image_list.relationships.clear();
  const VrdSplit split = read_vrd_split(image_list, m.predicates);
  SETDET_CHECK(split.classes == m.classes, files->instances,
               ": the object classes differ from those the pipeline was trained on");
  const auto P = static_cast<int64_t>(m.predicates.size());
  say("predicting the {} split: {} images", o.split, split.images.size());

  const PairStatistics stats =
      PairStatistics::from_json(read_text(model_file(c, "stage2", "pair_statistics.json")),
                                model_file(c, "stage2", "pair_statistics.json"));
  const auto load_models = [&](const std::string& stage, const std::string& prefix) {
    std::vector<XgbBooster> models;
    for (const auto& p : m.predicates) {
      models.push_back(XgbBooster::load(model_file(c, stage, prefix + p + ".json")));
    }
    return models;
  };
  const std::vector<XgbBooster> spatial = load_models("stage2", "spatial_");
  const std::vector<XgbBooster> stage3 = load_models("stage3", "stage3_");
  VisualRelationNet net = make_visual_net(c, P);
  load_checkpoint(model_file(c, "stage2", "visual.pt"), *net);

  // stage 1
  const auto objects = detected_objects(c, split);
  std::vector<OutputRow> is_rows;
  if (c.attributes) {
    is_rows = attribute_rows(c, run_logged(*c.attributes, split, c, "attribute detector"));
    say("stage 1: {} 'is' relationships", is_rows.size());
  }

  // stages 2 and 3
  const PairTable t = build_pair_table(split, objects, stats, false, false);
  say("stage 2: {} candidate pairs", t.rows());
  const std::vector<float> sp =
      predict_predicates(spatial, t.features, t.num_features, "spatial features");
  const std::vector<float> vi =
      visual_probabilities(net, split, objects, t, c, "the " + o.split + " split");
  const std::vector<float> x3 = stage3_features(t, objects, sp, vi, m.stage2_gt_boxes);
  const std::vector<float> s3 = predict_predicates(
      stage3, x3, static_cast<int64_t>(stage3_feature_names(m.predicates).size()),
      "stage-3 features");

  const auto rows_of = [&](const std::string& variant) {
    std::vector<std::vector<OutputRow>> per_image(split.images.size());
    for (int64_t r = 0; r < t.rows(); ++r) {
      const auto& obj = objects[static_cast<size_t>(t.image[r])];
      const VrdObject& a = obj[static_cast<size_t>(t.pair[r][0])];
      const VrdObject& b = obj[static_cast<size_t>(t.pair[r][1])];
      const float boxes = detection_factor(
          a, b, variant == "stage3" ? m.stage3_gt_boxes : m.stage2_gt_boxes);
      for (int64_t p = 0; p < P; ++p) {
        const size_t k = static_cast<size_t>(r * P + p);
        const float prob = variant == "spatial"   ? sp[k]
                           : variant == "visual"  ? vi[k]
                           : variant == "average" ? 0.5f * (sp[k] + vi[k])
                                                  : s3[k];
        const float score = prob * boxes;
        if (score < c.min_score) continue;
        per_image[static_cast<size_t>(t.image[r])].push_back(
            {t.image[r], split.classes[static_cast<size_t>(a.label)],
             split.classes[static_cast<size_t>(b.label)], m.predicates[static_cast<size_t>(p)],
             a.box, b.box, score});
      }
    }
    std::vector<OutputRow> rows;
    for (auto& im : per_image) {
      std::stable_sort(im.begin(), im.end(),
                       [](const OutputRow& x, const OutputRow& y) { return x.score > y.score; });
      if (static_cast<int64_t>(im.size()) > c.max_per_image) {
        im.resize(static_cast<size_t>(c.max_per_image));
      }
      rows.insert(rows.end(), im.begin(), im.end());
    }
    rows.insert(rows.end(), is_rows.begin(), is_rows.end());
    return rows;
  };

  if (!o.out.empty()) {
    write_rows(o.out, split, rows_of(o.variant));
    say("{} relationships -> {}", o.variant, o.out);
  }
  if (!o.variants_dir.empty()) {
    for (const auto& v : variants) {
      const std::string path = (fs::path(o.variants_dir) / ("dt_" + v + ".csv")).string();
      write_rows(path, split, rows_of(v));
      say("{} relationships -> {}", v, path);
    }
  }
  if (!o.vis.empty()) {
    std::vector<DrawnRelationship> drawn;
    const int64_t n = std::min<int64_t>(o.vis_images, static_cast<int64_t>(split.images.size()));
    for (const auto& r : rows_of(o.variant)) {
      if (r.image < n && r.score >= o.vis_min_score) {
        drawn.push_back({r.image, r.label1, r.label2, r.predicate, r.box1, r.box2, r.score});
      }
    }
    std::vector<std::string> paths;
    for (int64_t i = 0; i < n; ++i) paths.push_back(split.images[static_cast<size_t>(i)].path);
    draw_relationships(paths, drawn, o.vis);
    say("{} relationships (score >= {}) on {} images -> {}", drawn.size(), o.vis_min_score, n,
        o.vis);
  }
  say("predicted in {:.1f} s", since(start));
}

}  // namespace setdet
