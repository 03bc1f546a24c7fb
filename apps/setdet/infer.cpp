// `setdet infer --config CONFIG --checkpoint CKPT [--out-dir DIR] [--json OUT.json]
// [--score-thr S] [--gt COCO.json] [--sheet SHEET.png] [--set key=value ...] IMAGE...`: runs a
// trained detector on image files, draws the detections (class name and score) into PNGs and/or
// writes them as JSON:
//   [{"file": path, "detections": [{"box_xyxy": [x1, y1, x2, y2], "score": s, "label": l,
//     "name": "circle"}, ...]}, ...]
// Boxes are in the pixels of the original image; the JSON holds every detection, the drawings
// those scored >= the drawing threshold: --score-thr, else the F1-best threshold `setdet test`
// stored beside the checkpoint, else 0.3. Images under 640 px are drawn enlarged (an integer
// factor, at most 4) so that the labels stay legible. --gt draws each image as "ground truth |
// detections" side by side (boxes of the COCO file's image with the same file name); --sheet
// stacks every drawing into one PNG. The test-time pipeline is the one of data.test, else
// data.val, of the config.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/coco.h"
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
  std::optional<double> score_thr;
  std::string gt;
  std::string sheet;
  std::vector<std::string> overrides;
  std::vector<std::string> images;
  std::string precision = "float32";
};

constexpr double kDefaultDrawingThreshold = 0.3;
constexpr int kLegibleSide = 640;  // smaller images are drawn enlarged
constexpr int kMaxEnlargement = 4;

cv::Scalar class_colour(int64_t label) {
  static const cv::Scalar kPalette[] = {{56, 56, 255},  {151, 157, 255}, {31, 112, 255},
                                        {29, 178, 255}, {49, 210, 207},  {10, 249, 72},
                                        {23, 204, 146}, {134, 219, 61},  {211, 188, 0},
                                        {255, 149, 0},  {255, 55, 0},    {236, 24, 0}};
  return kPalette[label % static_cast<int64_t>(std::size(kPalette))];
}

int enlargement(const cv::Mat& image) {
  const int side = std::max(image.cols, image.rows);
  return std::clamp((kLegibleSide + side - 1) / std::max(side, 1), 1, kMaxEnlargement);
}

// `image` enlarged by `scale` with the boxes scored >= score_thr drawn (labels: class name, and
// the score when show_score), under a title bar.
cv::Mat draw_panel(const cv::Mat& image, const std::vector<Detection>& dets, double score_thr,
                   bool show_score, int scale, const std::string& title) {
  cv::Mat canvas;
  cv::resize(image, canvas, cv::Size(image.cols * scale, image.rows * scale), 0, 0,
             scale > 1 ? cv::INTER_CUBIC : cv::INTER_LINEAR);
  const int thickness = std::max(1, static_cast<int>(std::lround(canvas.cols / 400.0)));
  const double font = std::max(0.45, canvas.cols / 1400.0);
  for (const Detection& d : dets) {
    if (d.score < score_thr) continue;
    const cv::Point p1(static_cast<int>(d.x1 * scale), static_cast<int>(d.y1 * scale));
    const cv::Point p2(static_cast<int>(d.x2 * scale), static_cast<int>(d.y2 * scale));
    const cv::Scalar colour = class_colour(d.label);
    cv::rectangle(canvas, p1, p2, colour, thickness, cv::LINE_AA);
    const std::string text =
        show_score ? fmt::format("{} {:.2f}", d.class_name, d.score) : d.class_name;
    int baseline = 0;
    const cv::Size size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, font, 1, &baseline);
    const int top = std::max(p1.y - size.height - baseline, 0);
    cv::rectangle(canvas, cv::Point(p1.x, top),
                  cv::Point(p1.x + size.width, top + size.height + baseline), colour, cv::FILLED);
    cv::putText(canvas, text, cv::Point(p1.x, top + size.height), cv::FONT_HERSHEY_SIMPLEX, font,
                cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
  int baseline = 0;
  const double title_font = std::max(0.5, canvas.cols / 1200.0);
  const cv::Size size = cv::getTextSize(title, cv::FONT_HERSHEY_SIMPLEX, title_font, 1, &baseline);
  cv::Mat out(canvas.rows + size.height + baseline + 8, canvas.cols, canvas.type(),
              cv::Scalar(255, 255, 255));
  canvas.copyTo(out(cv::Rect(0, out.rows - canvas.rows, canvas.cols, canvas.rows)));
  cv::putText(out, title, cv::Point(4, size.height + 4), cv::FONT_HERSHEY_SIMPLEX, title_font,
              cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  return out;
}

// The ground-truth boxes of the COCO image whose file name is `file`'s, as detections of score 1
// (labels: the category's position in the file's categories).
std::vector<Detection> ground_truth_boxes(const CocoDataset& gt, const std::string& gt_file,
                                          const std::string& file) {
  const std::string name = fs::path(file).filename().string();
  const auto image = std::find_if(gt.images.begin(), gt.images.end(), [&](const CocoImage& im) {
    return fs::path(im.file_name).filename().string() == name;
  });
  SETDET_CHECK(image != gt.images.end(), "--gt ", gt_file, ": no image with file name '", name,
               "' (for ", file, ")");
  std::vector<Detection> out;
  for (const CocoAnnotation& a : gt.annotations) {
    if (a.image_id != image->id) continue;
    const size_t k = gt.category_index.at(a.category_id);
    out.push_back({static_cast<float>(a.bbox[0]), static_cast<float>(a.bbox[1]),
                   static_cast<float>(a.bbox[0] + a.bbox[2]),
                   static_cast<float>(a.bbox[1] + a.bbox[3]), 1.0f, static_cast<int64_t>(k),
                   gt.categories[k].name});
  }
  return out;
}

// Drawings side by side (heights equal: the taller padded with white).
cv::Mat beside(const cv::Mat& a, const cv::Mat& b) {
  const int gap = 8;
  cv::Mat out(std::max(a.rows, b.rows), a.cols + gap + b.cols, a.type(),
              cv::Scalar(255, 255, 255));
  a.copyTo(out(cv::Rect(0, 0, a.cols, a.rows)));
  b.copyTo(out(cv::Rect(a.cols + gap, 0, b.cols, b.rows)));
  return out;
}

// Drawings one under the other (widths equal: narrower ones padded with white).
cv::Mat stacked(const std::vector<cv::Mat>& rows) {
  const int gap = 8;
  int width = 0, height = 0;
  for (const auto& r : rows) {
    width = std::max(width, r.cols);
    height += r.rows + gap;
  }
  cv::Mat out(std::max(height - gap, 1), std::max(width, 1), CV_8UC3, cv::Scalar(255, 255, 255));
  int y = 0;
  for (const auto& r : rows) {
    r.copyTo(out(cv::Rect(0, y, r.cols, r.rows)));
    y += r.rows + gap;
  }
  return out;
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
  SETDET_CHECK(!o.out_dir.empty() || !o.json.empty() || !o.sheet.empty(),
               "infer: nothing to write: give --out-dir DIR, --json OUT.json and/or --sheet "
               "SHEET.png");
  DetectorOptions options;
  options.overrides = o.overrides;
  options.precision = o.precision;
  const Detector detector(o.config, o.checkpoint, options);
  if (!detector.class_names_warning().empty()) {
    std::cerr << "setdet infer: class names unavailable (" << detector.class_names_warning()
              << "), using numbers\n";
  }
  std::optional<CocoDataset> gt;
  if (!o.gt.empty()) gt = load_coco_instances(o.gt);
  double score_thr = kDefaultDrawingThreshold;
  std::string thr_source = "the default";
  if (o.score_thr) {
    score_thr = *o.score_thr;
    thr_source = "--score-thr";
  } else if (detector.drawing_threshold()) {
    score_thr = *detector.drawing_threshold();
    thr_source = "F1-best on the split `setdet test` evaluated, " +
                 detector.drawing_threshold_source();
  }
  const bool drawing = !o.out_dir.empty() || !o.sheet.empty();
  if (drawing) std::cout << fmt::format("drawing scores >= {:.3f} ({})\n", score_thr, thr_source);
  if (!o.out_dir.empty()) fs::create_directories(o.out_dir);

  std::string json = "[";
  std::vector<cv::Mat> sheet;
  for (size_t i = 0; i < o.images.size(); ++i) {
    const std::string& file = o.images[i];
    const cv::Mat image = read_image(file);
    const std::vector<Detection> dets = detector.detect(image);
    json += (i ? ",\n " : "") + detections_json(file, dets);
    int64_t shown = 0;
    for (const Detection& d : dets) shown += d.score >= score_thr;
    if (drawing) {
      const int scale = enlargement(image);
      cv::Mat drawn = draw_panel(
          image, dets, score_thr, true, scale,
          fmt::format("{}: {} detections >= {:.2f}", fs::path(file).filename().string(), shown,
                      score_thr));
      if (gt) {
        const auto boxes = ground_truth_boxes(*gt, o.gt, file);
        drawn = beside(draw_panel(image, boxes, 0.0, false, scale,
                                  fmt::format("ground truth: {} objects", boxes.size())),
                       drawn);
      }
      if (!o.out_dir.empty()) {
        write_image((fs::path(o.out_dir) / (fs::path(file).stem().string() + ".png")).string(),
                  drawn);
      }
      if (!o.sheet.empty()) sheet.push_back(std::move(drawn));
    }
    std::cout << fmt::format("{}: {} detections, {} with score >= {:.3f}\n", file, dets.size(),
                             shown, score_thr);
  }
  json += "]\n";
  if (!o.json.empty()) write_file_atomic(o.json, json);
  if (!o.sheet.empty()) write_image(o.sheet, stacked(sheet));
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
      app.add_option("--score-thr", o->score_thr,
                     "draw only detections with at least this score (default: the F1-best "
                     "threshold `setdet test` stored beside the checkpoint, else 0.3)")
          ->check(kFinite)
          ->check(CLI::Range(0.0, 1.0));
      app.add_option("--gt", o->gt,
                     "COCO instances JSON: draw each image as ground truth | detections (images "
                     "matched by file name)")
          ->check(CLI::ExistingFile);
      app.add_option("--sheet", o->sheet, "write every drawing, one under the other, to this PNG");
      app.add_option("--precision", o->precision,
                     "network precision: float32, or bfloat16 (backbone, neck and dense head in "
                     "bfloat16; fast on CPUs with AVX512-BF16 / AMX)")
          ->check(CLI::IsMember({"float32", "bfloat16"}));
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      app.add_option("images", o->images, "image files")->required()->check(CLI::ExistingFile);
      return [o] { return run_infer(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
