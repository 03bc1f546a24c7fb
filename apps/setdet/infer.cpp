// `setdet infer --config CONFIG --checkpoint CKPT [--out-dir DIR] [--json OUT.json]
// [--score-thr S] [--set key=value ...] IMAGE...`: runs a trained detector on image files, draws
// the detections (class name and score) into PNGs and/or writes them as JSON:
//   [{"file": path, "detections": [{"box_xyxy": [x1, y1, x2, y2], "score": s, "label": l,
//     "name": "circle"}, ...]}, ...]
// Boxes are in the pixels of the original image. The test-time pipeline is the one of data.test,
// else data.val, of the config.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/data/image_io.h"
#include "setdet/setdet.h"

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

cv::Scalar class_colour(int64_t label) {
  static const cv::Scalar kPalette[] = {{56, 56, 255},  {151, 157, 255}, {31, 112, 255},
                                        {29, 178, 255}, {49, 210, 207},  {10, 249, 72},
                                        {23, 204, 146}, {134, 219, 61},  {211, 188, 0},
                                        {255, 149, 0},  {255, 55, 0},    {236, 24, 0}};
  return kPalette[label % static_cast<int64_t>(std::size(kPalette))];
}

void draw_detections(cv::Mat& image, const std::vector<Detection>& dets, double score_thr) {
  const int thickness = std::max(1, static_cast<int>(std::lround(image.cols / 400.0)));
  const double font = std::max(0.35, image.cols / 1000.0);
  for (const Detection& d : dets) {
    if (d.score < score_thr) continue;
    const cv::Point p1(static_cast<int>(d.x1), static_cast<int>(d.y1));
    const cv::Point p2(static_cast<int>(d.x2), static_cast<int>(d.y2));
    const cv::Scalar colour = class_colour(d.label);
    cv::rectangle(image, p1, p2, colour, thickness, cv::LINE_AA);
    const std::string text = fmt::format("{} {:.2f}", d.class_name, d.score);
    int baseline = 0;
    const cv::Size size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, font, 1, &baseline);
    const int top = std::max(p1.y - size.height - baseline, 0);
    cv::rectangle(image, cv::Point(p1.x, top),
                  cv::Point(p1.x + size.width, top + size.height + baseline), colour, cv::FILLED);
    cv::putText(image, text, cv::Point(p1.x, top + size.height), cv::FONT_HERSHEY_SIMPLEX, font,
                cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
}

std::string detections_json(const std::string& file, const std::vector<Detection>& dets) {
  std::ostringstream os;
  os << "{\"file\": " << json_string(file) << ", \"detections\": [";
  for (size_t i = 0; i < dets.size(); ++i) {
    const Detection& d = dets[i];
    os << (i ? ", " : "") << "{\"box_xyxy\": [" << json_number(d.x1) << ", " << json_number(d.y1)
       << ", " << json_number(d.x2) << ", " << json_number(d.y2)
       << "], \"score\": " << json_number(d.score) << ", \"label\": " << d.label
       << ", \"name\": " << json_string(d.class_name) << "}";
  }
  os << "]}";
  return os.str();
}

int run_infer(const InferOptions& o) {
  SETDET_CHECK(!o.out_dir.empty() || !o.json.empty(),
               "infer: nothing to write: give --out-dir DIR and/or --json OUT.json");
  DetectorOptions options;
  options.overrides = o.overrides;
  const Detector detector(o.config, o.checkpoint, options);
  if (!detector.class_names_warning().empty()) {
    std::cerr << "setdet infer: class names unavailable (" << detector.class_names_warning()
              << "), using numbers\n";
  }
  if (!o.out_dir.empty()) fs::create_directories(o.out_dir);

  std::string json = "[";
  for (size_t i = 0; i < o.images.size(); ++i) {
    const std::string& file = o.images[i];
    cv::Mat image = read_image(file);
    const std::vector<Detection> dets = detector.detect(image);
    json += (i ? ",\n " : "") + detections_json(file, dets);
    if (!o.out_dir.empty()) {
      draw_detections(image, dets, o.score_thr);
      std::vector<uchar> png;
      cv::imencode(".png", image, png);
      const auto out = (fs::path(o.out_dir) / (fs::path(file).stem().string() + ".png")).string();
      write_file_atomic(out,
                        std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
    }
    int64_t shown = 0;
    for (const Detection& d : dets) shown += d.score >= o.score_thr;
    std::cout << fmt::format("{}: {} detections, {} with score >= {}\n", file, dets.size(), shown,
                             o.score_thr);
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
