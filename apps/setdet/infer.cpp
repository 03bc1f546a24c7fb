// `setdet infer --config CONFIG --checkpoint CKPT [--out-dir DIR] [--json OUT.json]
// [--score-thr S] [--set key=value ...] IMAGE...`: runs a trained detector on image files, draws
// the detections (class name and score) into PNGs and/or writes them as JSON:
//   [{"file": path, "detections": [{"box_xyxy": [x1, y1, x2, y2], "score": s, "label": l,
//     "name": "circle"}, ...]}, ...]
// Boxes are in the pixels of the original image. The test-time pipeline is the one of data.test,
// else data.val, of the config.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/data/dataset.h"
#include "setdet/data/loader.h"
#include "setdet/data/random.h"
#include "setdet/data/transforms.h"
#include "setdet/engine/runner.h"
#include "setdet/io/state_dict.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/models/detector.h"

namespace setdet::cli {
namespace {

namespace fs = std::filesystem;

struct InferOptions {
  std::string config;
  std::string checkpoint;
  std::string out_dir;
  std::string json;
  double score_thr = 0.3;
  std::vector<std::string> overrides;
  std::vector<std::string> images;
};

// The split whose pipeline is used at test time, and its dataset (for the class names).
struct TestTimeData {
  std::vector<std::shared_ptr<Transform>> pipeline;
  std::vector<std::string> class_names;
};

TestTimeData test_time_data(const Config& cfg, int64_t num_classes) {
  const Config data = cfg["data"];
  SETDET_CHECK(data.has("test") || data.has("val"), cfg.file(),
               ": infer needs data.test or data.val (their pipeline is the test-time one)");
  const Config split = data.has("test") ? data["test"] : data["val"];
  const Config dataset = split["dataset"];
  TestTimeData out;
  out.pipeline = build_pipeline(dataset["pipeline"]);
  for (const auto& t : out.pipeline) {
    SETDET_CHECK(dynamic_cast<const RandomFlip*>(t.get()) == nullptr, dataset.where(),
                 ".pipeline: a test-time pipeline must not flip randomly");
  }
  // Class names come from the dataset's annotation file when it is there; plain numbers otherwise.
  try {
    out.class_names = DatasetRegistry().build(dataset)->class_names();
  } catch (const Error& e) {
    std::cerr << "setdet infer: class names unavailable (" << e.what() << "), using numbers\n";
  }
  if (static_cast<int64_t>(out.class_names.size()) != num_classes) {
    out.class_names.clear();
    for (int64_t c = 0; c < num_classes; ++c) out.class_names.push_back(std::to_string(c));
  }
  return out;
}

cv::Scalar class_colour(int64_t label) {
  static const cv::Scalar kPalette[] = {{56, 56, 255},  {151, 157, 255}, {31, 112, 255},
                                        {29, 178, 255}, {49, 210, 207},  {10, 249, 72},
                                        {23, 204, 146}, {134, 219, 61},  {211, 188, 0},
                                        {255, 149, 0},  {255, 55, 0},    {236, 24, 0}};
  return kPalette[label % static_cast<int64_t>(std::size(kPalette))];
}

void draw_detections(cv::Mat& image, const Detections& dets, const std::vector<std::string>& names,
                     double score_thr) {
  const auto boxes = dets.boxes.accessor<float, 2>();
  const auto scores = dets.scores.accessor<float, 1>();
  const auto labels = dets.labels.accessor<int64_t, 1>();
  const int thickness = std::max(1, static_cast<int>(std::lround(image.cols / 400.0)));
  const double font = std::max(0.35, image.cols / 1000.0);
  for (int64_t i = 0; i < dets.scores.size(0); ++i) {
    if (scores[i] < score_thr) continue;
    const cv::Point p1(static_cast<int>(boxes[i][0]), static_cast<int>(boxes[i][1]));
    const cv::Point p2(static_cast<int>(boxes[i][2]), static_cast<int>(boxes[i][3]));
    const cv::Scalar colour = class_colour(labels[i]);
    cv::rectangle(image, p1, p2, colour, thickness, cv::LINE_AA);
    const std::string text =
        fmt::format("{} {:.2f}", names[static_cast<size_t>(labels[i])], scores[i]);
    int baseline = 0;
    const cv::Size size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, font, 1, &baseline);
    const int top = std::max(p1.y - size.height - baseline, 0);
    cv::rectangle(image, cv::Point(p1.x, top),
                  cv::Point(p1.x + size.width, top + size.height + baseline), colour, cv::FILLED);
    cv::putText(image, text, cv::Point(p1.x, top + size.height), cv::FONT_HERSHEY_SIMPLEX, font,
                cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
}

std::string detections_json(const std::string& file, const Detections& dets,
                            const std::vector<std::string>& names) {
  std::ostringstream os;
  os << "{\"file\": " << json_string(file) << ", \"detections\": [";
  const auto boxes = dets.boxes.accessor<float, 2>();
  const auto scores = dets.scores.accessor<float, 1>();
  const auto labels = dets.labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < dets.scores.size(0); ++i) {
    os << (i ? ", " : "") << "{\"box_xyxy\": [";
    for (int k = 0; k < 4; ++k) os << (k ? ", " : "") << json_number(boxes[i][k]);
    os << "], \"score\": " << json_number(scores[i]) << ", \"label\": " << labels[i]
       << ", \"name\": " << json_string(names[static_cast<size_t>(labels[i])]) << "}";
  }
  os << "]}";
  return os.str();
}

int run_infer(const InferOptions& o) {
  SETDET_CHECK(!o.out_dir.empty() || !o.json.empty(),
               "infer: nothing to write: give --out-dir DIR and/or --json OUT.json");
  Config cfg = Config::load(o.config);
  for (const auto& s : o.overrides) cfg.set_override(s);
  auto model = DetectorRegistry().build(cfg["model"]);
  load_model_weights(o.checkpoint, *model, cfg);
  model->eval();
  fuse_for_inference(*model);  // BatchNorm folded into the convolutions (same names, same output)
  const TestTimeData data = test_time_data(cfg, model->num_classes());
  if (!o.out_dir.empty()) fs::create_directories(o.out_dir);

  torch::NoGradGuard no_grad;
  std::string json = "[";
  for (size_t i = 0; i < o.images.size(); ++i) {
    const std::string& file = o.images[i];
    Sample sample = image_sample(file);
    const cv::Mat original = sample.image.clone();
    Rng rng({0, static_cast<uint64_t>(i)});
    apply_pipeline(data.pipeline, sample, rng);
    const Batch batch = collate({sample}, 32);
    const Detections dets = model->predict(batch).at(0);
    json += (i ? ",\n " : "") + detections_json(file, dets, data.class_names);
    if (!o.out_dir.empty()) {
      cv::Mat canvas = original;
      draw_detections(canvas, dets, data.class_names, o.score_thr);
      std::vector<uchar> png;
      cv::imencode(".png", canvas, png);
      const auto out = (fs::path(o.out_dir) / (fs::path(file).stem().string() + ".png")).string();
      write_file_atomic(out,
                        std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
    }
    int64_t shown = 0;
    for (int64_t k = 0; k < dets.scores.size(0); ++k)
      shown += dets.scores[k].item<float>() >= o.score_thr;
    std::cout << fmt::format("{}: {} detections, {} with score >= {}\n", file, dets.scores.size(0),
                             shown, o.score_thr);
  }
  json += "]\n";
  if (!o.json.empty()) write_file_atomic(o.json, json);
  return 0;
}

const RegisterCommand kInfer{
    "infer", "run a trained detector on images: drawn PNGs and/or a JSON of detections",
    [](CLI::App& app) {
      auto o = std::make_shared<InferOptions>();
      app.add_option("--config", o->config, "config YAML")->required()->check(CLI::ExistingFile);
      app.add_option("--checkpoint", o->checkpoint,
                     "setdet checkpoint (.pt) or PyTorch state_dict (.pth from torch.save)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--out-dir", o->out_dir,
                     "write IMAGE stems as PNGs with the detections drawn");
      app.add_option("--json", o->json, "write all detections as JSON");
      app.add_option("--score-thr", o->score_thr, "draw only detections with at least this score")
          ->check(kFinite)
          ->check(CLI::Range(0.0, 1.0));
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      app.add_option("images", o->images, "image files")->required()->check(CLI::ExistingFile);
      return [o] { return run_infer(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
