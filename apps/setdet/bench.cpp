// `setdet bench --config CONFIG [--checkpoint CKPT] [--mode network|e2e|group-norm|roi-head]
// [--height H --width W] [--image FILE] [--repeats N] [--warmup K] [--no-fuse] [--breakdown]`:
// times a detector built from CONFIG (random weights unless --checkpoint) and prints one JSON
// object on stdout. Thread count: the global --threads option.
//   network:    DetectorModel::forward_network() on a fixed [1, 3, H, W] tensor (no pre- or
//               post-processing; FCOS, FCOS_PSS, RetinaNet). --breakdown (FCOS) adds backbone /
//               neck / head medians and the head's median with setdet::group_norm_inference in
//               its towers.
//   e2e:        what `setdet infer` does per image: decode FILE, the test-time pipeline of
//               data.test (else data.val), collate, predict (decode + NMS). When fused, the
//               detections are also compared with the unfused model's (count, labels, max
//               box / score difference). --breakdown adds the decode, pre-processing
//               (pipeline + collate) and predict medians and the network alone on that input.
//   group-norm: GroupNorm(32) + ReLU on the FPN level shapes of an H x W input (channels-last,
//               256 channels): at::group_norm + relu_ against setdet::group_norm_inference.
//   roi-head:   a two-stage detector's box head (2fc, with its relation modules) on --rois RoIs
//               of one image against the same head without relation modules: the relation
//               modules' share of the head's time.
// Unless --no-fuse, BatchNorms are folded into convs first (setdet::fuse_for_inference).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/normalization.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/error.h"
#include "setdet/data/loader.h"
#include "setdet/data/random.h"
#include "setdet/data/transforms.h"
#include "setdet/engine/autocast.h"
#include "setdet/io/state_dict.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/layers/group_norm.h"
#include "setdet/layers/onednn_conv.h"
#include "setdet/models/detector.h"
#include "setdet/models/detectors/fcos.h"
#include "setdet/models/detectors/two_stage.h"

namespace setdet::cli {
namespace {

struct BenchOptions {
  std::string config;
  std::string checkpoint;
  std::string mode = "network";
  std::string image;
  int64_t height = 800;
  int64_t width = 1216;
  int repeats = 5;
  int warmup = 1;
  bool no_fuse = false;
  bool no_winograd = false;
  std::string precision = "float32";
  bool breakdown = false;
  int64_t rois = 1000;
  std::vector<std::string> overrides;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
  SETDET_CHECK(!v.empty(), "bench: no timings");
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{:.6f}", i ? ", " : "", v[i]);
  return s + "]";
}

// Runs fn warmup + repeats times; returns the timed seconds.
template <typename F>
std::vector<double> time_runs(const BenchOptions& o, F&& fn) {
  for (int i = 0; i < o.warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < o.repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    t.push_back(seconds_since(start));
  }
  return t;
}

std::string common_json(const BenchOptions& o, bool fused) {
  return fmt::format(
      "\"mode\": \"{}\", \"config\": \"{}\", \"checkpoint\": \"{}\", \"threads\": {}, "
      "\"fused\": {}, \"winograd\": {}, \"precision\": \"{}\", \"repeats\": {}, \"warmup\": {}",
      o.mode, o.config, o.checkpoint, at::get_num_threads(), fused ? "true" : "false",
      onednn_winograd() ? "true" : "false", o.precision, o.repeats, o.warmup);
}

// The box head with and without its relation modules on the same random RoI features.
int bench_roi_head(const BenchOptions& o, const Config& cfg, DetectorModel& model) {
  auto* two_stage = dynamic_cast<TwoStageDetector*>(&model);
  SETDET_CHECK(two_stage != nullptr, o.config, ": --mode roi-head needs a two-stage detector, got ",
               "model.type ", cfg["model"].get<std::string>("type", "?"));
  SETDET_CHECK(o.rois > 0, "bench: --rois must be positive, got ", o.rois);
  TwoMLPHeadImpl& head = two_stage->roi_head().box_head();
  TwoMLPHeadOptions plain_opts = head.options();
  plain_opts.relations_fc6(0).relations_fc7(0);
  TwoMLPHead plain(plain_opts);
  plain->eval();
  const at::Tensor feats = at::randn({o.rois, head.options().in_features()});
  const at::Tensor xy = at::rand({o.rois, 2}) * static_cast<double>(o.width) * 0.8;
  const at::Tensor boxes = at::cat({xy, xy + at::rand({o.rois, 2}) * 200.0 + 4.0}, 1);
  const std::vector<std::pair<int64_t, int64_t>> groups{{o.rois, o.rois}};
  const auto with_rm = time_runs(o, [&] { head.forward(feats, boxes, groups); });
  const auto without = time_runs(o, [&] { plain->forward(feats, boxes, groups); });
  const double share = head.has_relations() ? 1.0 - median(without) / median(with_rm) : 0.0;
  std::cout << fmt::format(
      "{{{}, \"rois\": {}, \"relations\": [{}, {}], \"fc_dim\": {}, \"head_median_s\": {:.6f}, "
      "\"head_without_relations_median_s\": {:.6f}, \"relation_share\": {:.4f}}}\n",
      common_json(o, false), o.rois, head.options().relations_fc6(), head.options().relations_fc7(),
      head.options().fc_dim(), median(with_rm), median(without), share);
  return 0;
}

int bench_group_norm(const BenchOptions& o) {
  torch::NoGradGuard no_grad;
  at::manual_seed(0);
  std::vector<double> aten_t, ours_t;
  double max_diff = 0;
  // FCOS head input: P3..P7 of an H x W image, 256 channels, 32 groups.
  int64_t h = o.height, w = o.width;
  std::vector<at::Tensor> inputs;
  for (int level = 1; level <= 7; ++level) {
    h = (h + 1) / 2;
    w = (w + 1) / 2;
    if (level >= 3) {
      inputs.push_back(at::randn({1, 256, h, w}).contiguous(at::MemoryFormat::ChannelsLast) * 2.0 +
                       0.5);
    }
  }
  const at::Tensor weight = at::rand({256}) + 0.5;
  const at::Tensor bias = at::randn({256}) * 0.1;
  for (const auto& x : inputs) {
    const at::Tensor ref = at::group_norm(x, 32, weight, bias, 1e-5).relu_();
    const at::Tensor ours = group_norm_inference(x, 32, weight, bias, 1e-5, /*relu=*/true);
    max_diff = std::max(max_diff, (ref - ours).abs().max().item<double>());
  }
  // One "pass" = the 8 GroupNorm + ReLU of the two FCOS towers on every level.
  aten_t = time_runs(o, [&] {
    for (const auto& x : inputs) {
      for (int k = 0; k < 8; ++k) at::group_norm(x, 32, weight, bias, 1e-5).relu_();
    }
  });
  ours_t = time_runs(o, [&] {
    for (const auto& x : inputs) {
      for (int k = 0; k < 8; ++k) group_norm_inference(x, 32, weight, bias, 1e-5, true);
    }
  });
  std::cout << fmt::format(
      "{{{}, \"input\": [1, 3, {}, {}], \"aten_times_s\": {}, \"aten_median_s\": {:.6f}, "
      "\"setdet_times_s\": {}, \"setdet_median_s\": {:.6f}, \"max_abs_diff\": {:.3g}}}\n",
      common_json(o, false), o.height, o.width, json_list(aten_t), median(aten_t),
      json_list(ours_t), median(ours_t), max_diff);
  return 0;
}

// The FCOS towers run module by module with each GroupNorm (+ the ReLU after it) replaced by
// setdet::group_norm_inference: what FCOSHead gives once its towers use setdet::GroupNorm.
// Returns per level the cls_logits, bbox_reg and bbox_ctrness conv outputs.
std::vector<at::Tensor> fcos_head_with_setdet_group_norm(FCOSHeadImpl& head,
                                                         const std::vector<at::Tensor>& feats) {
  auto branch = [](torch::nn::Module& b) {
    return b.named_children()["conv"]->as<torch::nn::Sequential>();
  };
  auto children = head.named_children();
  torch::nn::Module& cls_head = *children["classification_head"];
  torch::nn::Module& reg_head = *children["regression_head"];
  auto run_tower = [](torch::nn::SequentialImpl* tower, at::Tensor x) {
    const auto mods = tower->children();
    for (size_t i = 0; i < mods.size(); ++i) {
      if (auto* conv = mods[i]->as<torch::nn::Conv2d>()) {
        x = conv->forward(x);
      } else if (auto* gn = mods[i]->as<torch::nn::GroupNorm>()) {
        const bool relu = i + 1 < mods.size() && mods[i + 1]->as<torch::nn::ReLU>() != nullptr;
        x = group_norm_inference(x, gn->options.num_groups(), gn->weight, gn->bias,
                                 gn->options.eps(), relu);
        if (relu) ++i;
      } else if (auto* r = mods[i]->as<torch::nn::ReLU>()) {
        x = r->forward(x);
      } else {
        TORCH_CHECK(false, "bench: unexpected module in an FCOS tower: ", mods[i]->name());
      }
    }
    return x;
  };
  auto conv_of = [](torch::nn::Module& m, const std::string& name) {
    return m.named_children()[name]->as<torch::nn::Conv2d>();
  };
  std::vector<at::Tensor> out;
  for (const auto& f : feats) {
    out.push_back(conv_of(cls_head, "cls_logits")->forward(run_tower(branch(cls_head), f)));
    const at::Tensor r = run_tower(branch(reg_head), f);
    out.push_back(conv_of(reg_head, "bbox_reg")->forward(r));
    out.push_back(conv_of(reg_head, "bbox_ctrness")->forward(r));
  }
  return out;
}

std::vector<std::shared_ptr<Transform>> test_pipeline(const Config& cfg) {
  const Config data = cfg["data"];
  SETDET_CHECK(data.has("test") || data.has("val"), cfg.file(),
               ": bench --mode e2e needs data.test or data.val (their pipeline is the test-time "
               "one)");
  const Config split = data.has("test") ? data["test"] : data["val"];
  return build_pipeline(split["dataset"]["pipeline"]);
}

// The test-time pipeline and collation of one sample into a batch.
Batch preprocess(Sample sample, const std::vector<std::shared_ptr<Transform>>& pipeline) {
  Rng rng({0, 0});
  apply_pipeline(pipeline, sample, rng);
  return collate({sample}, 32);
}

int run_bench(const BenchOptions& o) {
  SETDET_CHECK(o.repeats > 0, "bench: --repeats must be positive, got ", o.repeats);
  SETDET_CHECK(o.height > 0 && o.width > 0, "bench: --height and --width must be positive, got ",
               o.height, " and ", o.width);
  if (o.mode == "group-norm") return bench_group_norm(o);

  Config cfg = Config::load(o.config);
  for (const auto& s : o.overrides) cfg.set_override(s);
  at::manual_seed(0);
  auto model = DetectorRegistry().build(cfg["model"]);
  if (!o.checkpoint.empty()) load_model_weights(o.checkpoint, *model, cfg);
  model->eval();
  model->set_inference_dtype(parse_precision(o.precision, "--precision"));
  set_onednn_winograd(!o.no_winograd);
  const int64_t fused_modules = o.no_fuse ? 0 : fuse_for_inference(*model);
  const bool fused = fused_modules > 0;
  torch::NoGradGuard no_grad;

  if (o.mode == "roi-head") return bench_roi_head(o, cfg, *model);

  if (o.mode == "network") {
    const at::Tensor images = at::randn({1, 3, o.height, o.width});
    const auto times = time_runs(o, [&] {
      SETDET_CHECK(!model->forward_network(images).empty(), o.config, ": model.type ",
                   cfg["model"].get<std::string>("type", "?"),
                   " has no network-only entry point (use --mode e2e)");
    });
    auto* fcos = dynamic_cast<FCOSDetector*>(model.get());  // --breakdown: FCOS's stages
    std::string extra;
    if (o.breakdown && fcos) {
      const at::Tensor x = fcos->input_layout(images);
      std::vector<double> tb, tn, th;
      for (int i = 0; i < o.warmup + o.repeats; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        const auto feats = fcos->backbone().forward(x);
        const double b = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        const auto pyramid = fcos->neck().forward(feats);
        const double n = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        fcos->head().forward(pyramid);
        const double h = seconds_since(t0);
        if (i >= o.warmup) {
          tb.push_back(b);
          tn.push_back(n);
          th.push_back(h);
        }
      }
      // The head again with setdet's GroupNorm kernel swapped in, and its largest deviation from
      // the head's own centre-ness output (same weights, same input).
      const auto pyramid = fcos->neck().forward(fcos->backbone().forward(x));
      const auto swapped = fcos_head_with_setdet_group_norm(fcos->head(), pyramid);
      const auto own = fcos->head().forward(pyramid);
      double diff = 0;
      for (size_t l = 0; l < pyramid.size(); ++l) {
        diff =
            std::max(diff, (swapped[3 * l] - own.at("cls_logits")[l]).abs().max().item<double>());
        diff = std::max(diff,
                        (swapped[3 * l + 2] - own.at("centerness")[l]).abs().max().item<double>());
      }
      const auto tg =
          time_runs(o, [&] { fcos_head_with_setdet_group_norm(fcos->head(), pyramid); });
      extra = fmt::format(
          ", \"backbone_median_s\": {:.6f}, \"neck_median_s\": {:.6f}, \"head_median_s\": {:.6f}, "
          "\"head_setdet_group_norm_median_s\": {:.6f}, \"head_setdet_group_norm_max_abs_diff\": "
          "{:.3g}",
          median(tb), median(tn), median(th), median(tg), diff);
    }
    std::cout << fmt::format(
        "{{{}, \"input\": [1, 3, {}, {}], \"times_s\": {}, "
        "\"median_s\": {:.6f}{}}}\n",
        common_json(o, fused), o.height, o.width, json_list(times), median(times), extra);
    return 0;
  }

  SETDET_CHECK(o.mode == "e2e", "bench: --mode must be network, e2e, group-norm or roi-head, got '",
               o.mode, "'");
  SETDET_CHECK(!o.image.empty(), "bench: --mode e2e needs --image FILE");
  const auto pipeline = test_pipeline(cfg);
  int64_t num_dets = 0;
  std::array<int64_t, 2> input_hw{0, 0};
  // Stage times of each run: decode, pipeline + collate, predict (network + post-processing).
  std::vector<double> t_decode, t_prep, t_predict;
  const auto times = time_runs(o, [&] {
    auto t0 = std::chrono::steady_clock::now();
    Sample sample = image_sample(o.image);
    t_decode.push_back(seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    const Batch batch = preprocess(std::move(sample), pipeline);
    t_prep.push_back(seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    input_hw = {batch.images.size(2), batch.images.size(3)};
    num_dets = model->predict(batch).at(0).scores.size(0);
    t_predict.push_back(seconds_since(t0));
  });
  std::string stages;
  if (o.breakdown) {
    // The network alone on the same padded input, so post-processing = predict - network.
    const at::Tensor images = at::zeros({1, 3, input_hw[0], input_hw[1]});
    bool has_network = true;
    const std::vector<double> t_net =
        time_runs(o, [&] { has_network = !model->forward_network(images).empty(); });
    auto tail = [&](const std::vector<double>& v) {
      return std::vector<double>(v.end() - o.repeats, v.end());  // drop the warm-up runs
    };
    stages = fmt::format(
        ", \"decode_median_s\": {:.6f}, \"preprocess_median_s\": {:.6f}, "
        "\"predict_median_s\": {:.6f}",
        median(tail(t_decode)), median(tail(t_prep)), median(tail(t_predict)));
    if (has_network) stages += fmt::format(", \"network_median_s\": {:.6f}", median(t_net));
  }
  // Folded vs unfolded detections on this image: same count, largest box / score difference.
  std::string check;
  if (fused) {
    const Batch batch = preprocess(image_sample(o.image), pipeline);
    const Detections a = model->predict(batch).at(0);
    for (const auto& m : model->modules()) {
      if (auto* f = dynamic_cast<InferenceFusable*>(m.get())) f->unfuse();
    }
    const Detections b = model->predict(batch).at(0);
    const bool same_count = a.scores.size(0) == b.scores.size(0);
    double box_diff = -1, score_diff = -1;
    bool same_labels = false;
    if (same_count && a.scores.size(0) > 0) {
      box_diff = (a.boxes - b.boxes).abs().max().item<double>();
      score_diff = (a.scores - b.scores).abs().max().item<double>();
      same_labels = at::equal(a.labels, b.labels);
    } else if (same_count) {
      box_diff = score_diff = 0;
      same_labels = true;
    }
    check = fmt::format(
        ", \"unfused_num_detections\": {}, \"unfused_same_labels\": {}, "
        "\"unfused_max_box_diff\": {:.3g}, \"unfused_max_score_diff\": {:.3g}",
        b.scores.size(0), same_labels ? "true" : "false", box_diff, score_diff);
  }
  std::cout << fmt::format(
      "{{{}, \"image\": \"{}\", \"input\": [1, 3, {}, {}], \"times_s\": {}, "
      "\"median_s\": {:.6f}, \"num_detections\": {}{}{}}}\n",
      common_json(o, fused), o.image, input_hw[0], input_hw[1], json_list(times), median(times),
      num_dets, stages, check);
  return 0;
}

const RegisterCommand kBench{
    "bench", "time a detector: network forward, end-to-end image to detections, GroupNorm",
    [](CLI::App& app) {
      auto o = std::make_shared<BenchOptions>();
      app.add_option("--config", o->config, "config YAML (model; data.test for e2e)")
          ->check(CLI::ExistingFile);
      app.add_option("--checkpoint", o->checkpoint, "weights (default: random initialisation)")
          ->check(CLI::ExistingFile);
      app.add_option("--mode", o->mode, "network, e2e, group-norm or roi-head")
          ->check(CLI::IsMember({"network", "e2e", "group-norm", "roi-head"}));
      app.add_option("--rois", o->rois, "RoIs per image (roi-head)");
      app.add_option("--image", o->image, "image file (e2e)")->check(CLI::ExistingFile);
      app.add_option("--height", o->height, "network input height (network, group-norm)");
      app.add_option("--width", o->width, "network input width (network, group-norm)");
      app.add_option("--repeats", o->repeats, "timed runs");
      app.add_option("--warmup", o->warmup, "untimed runs first")->check(CLI::NonNegativeNumber);
      app.add_flag("--no-fuse", o->no_fuse,
                   "keep BatchNorms unfolded and convolutions unpacked (at::conv2d)");
      app.add_flag("--no-winograd", o->no_winograd,
                   "packed convolutions use oneDNN's direct kernel only");
      app.add_option("--precision", o->precision, "network precision: float32 or bfloat16")
          ->check(CLI::IsMember({"float32", "bfloat16"}));
      app.add_flag("--breakdown", o->breakdown,
                   "network: also time backbone, neck, head; e2e: time each stage");
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      return [o] {
        SETDET_CHECK(o->mode == "group-norm" || !o->config.empty(),
                     "bench: --config is required for --mode ", o->mode);
        return run_bench(*o);
      };
    }};

}  // namespace
}  // namespace setdet::cli
