// `setdet dedup`: duplicate removal on COCO results files, per image and category (NMS,
// Soft-NMS, Matrix NMS), or ensembling of several results files by weighted box fusion.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>

#include "command.h"
#include "setdet/core/dedup/matrix_nms.h"
#include "setdet/core/dedup/nms.h"
#include "setdet/core/dedup/soft_nms.h"
#include "setdet/core/dedup/wbf.h"
#include "setdet/core/error.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/parallel.h"

namespace setdet::cli {
namespace {

struct DedupOptions {
  std::vector<std::string> dt;
  std::string gt;
  std::string out;
  std::string method;
  double iou_thr = 0.0;
  double score_thr = 0.0;
  int64_t max_dets = 0;
  double sigma = 0.0;
  double min_score = 0.0;
  std::string soft_method = "linear";
  std::string kernel = "gaussian";
  std::string conf_type = "avg";
  std::vector<double> weights;
  // which options were given on the command line
  CLI::Option* iou_thr_opt = nullptr;
  CLI::Option* score_thr_opt = nullptr;
  CLI::Option* max_dets_opt = nullptr;
  CLI::Option* sigma_opt = nullptr;
  CLI::Option* min_score_opt = nullptr;
  CLI::Option* soft_method_opt = nullptr;
  CLI::Option* kernel_opt = nullptr;
  CLI::Option* conf_type_opt = nullptr;
  CLI::Option* weights_opt = nullptr;
};

bool given(const CLI::Option* opt) { return opt != nullptr && opt->count() > 0; }

void require_method(const DedupOptions& o, const CLI::Option* opt, const char* name,
                    std::initializer_list<const char*> methods) {
  if (!given(opt)) return;
  for (const char* m : methods) {
    if (o.method == m) return;
  }
  std::string list;
  for (const char* m : methods) list += (list.empty() ? "" : " or ") + std::string(m);
  throw Error(std::string(name) + " applies to --method " + list + " only, not --method " +
              o.method);
}

void validate(const DedupOptions& o) {
  require_method(o, o.iou_thr_opt, "--iou-thr", {"nms", "soft-nms", "wbf"});
  require_method(o, o.sigma_opt, "--sigma", {"soft-nms", "matrix-nms"});
  require_method(o, o.min_score_opt, "--min-score", {"soft-nms", "matrix-nms"});
  require_method(o, o.soft_method_opt, "--soft-method", {"soft-nms"});
  require_method(o, o.kernel_opt, "--kernel", {"matrix-nms"});
  require_method(o, o.conf_type_opt, "--conf-type", {"wbf"});
  require_method(o, o.weights_opt, "--weights", {"wbf"});
  if (given(o.iou_thr_opt)) {
    SETDET_CHECK(std::isfinite(o.iou_thr) && o.iou_thr >= 0.0 && o.iou_thr <= 1.0,
                 "--iou-thr: expected a value in [0, 1], got ", o.iou_thr);
  }
  if (given(o.score_thr_opt)) {
    SETDET_CHECK(std::isfinite(o.score_thr), "--score-thr: expected a finite number, got ",
                 o.score_thr);
  }
  if (given(o.max_dets_opt)) {
    SETDET_CHECK(o.max_dets > 0, "--max-dets: expected a positive count, got ", o.max_dets);
  }
  if (given(o.sigma_opt)) {
    SETDET_CHECK(std::isfinite(o.sigma) && o.sigma > 0.0,
                 "--sigma: expected a positive number, got ", o.sigma);
  }
  if (given(o.min_score_opt)) {
    SETDET_CHECK(std::isfinite(o.min_score) && o.min_score >= 0.0,
                 "--min-score: expected a non-negative number, got ", o.min_score);
  }
  if (o.method == "wbf") {
    SETDET_CHECK(!o.gt.empty(),
                 "--method wbf needs --gt GT.json: weighted box fusion works on boxes "
                 "normalised by the image width and height, which come from the ground truth's "
                 "\"images\"");
    if (given(o.weights_opt)) {
      SETDET_CHECK(o.weights.size() == o.dt.size(),
                   "--weights: expected one weight per --dt file (", o.dt.size(), "), got ",
                   o.weights.size());
      for (const double w : o.weights) {
        SETDET_CHECK(std::isfinite(w) && w > 0.0, "--weights: expected positive numbers, got ", w);
      }
    }
  }
}

// [x, y, w, h] -> [x1, y1, x2, y2], scaled by (sx, sy)
void xywh_to_xyxy(const std::array<double, 4>& b, double sx, double sy, double* out) {
  out[0] = b[0] * sx;
  out[1] = b[1] * sy;
  out[2] = (b[0] + b[2]) * sx;
  out[3] = (b[1] + b[3]) * sy;
}

// Detections of one image: for each input file, the positions of its detections.
struct ImageGroup {
  int64_t image_id = 0;
  std::vector<std::vector<size_t>> per_file;
};

std::vector<ImageGroup> group_by_image(const std::vector<std::vector<CocoDetection>>& files) {
  std::unordered_map<int64_t, size_t> slot;
  std::vector<ImageGroup> groups;
  for (size_t f = 0; f < files.size(); ++f) {
    for (size_t i = 0; i < files[f].size(); ++i) {
      const int64_t id = files[f][i].image_id;
      auto [it, inserted] = slot.emplace(id, groups.size());
      if (inserted) {
        groups.push_back({id, std::vector<std::vector<size_t>>(files.size())});
      }
      groups[it->second].per_file[f].push_back(i);
    }
  }
  std::sort(groups.begin(), groups.end(),
            [](const ImageGroup& a, const ImageGroup& b) { return a.image_id < b.image_id; });
  return groups;
}

class Deduplicator {
 public:
  Deduplicator(const DedupOptions& o, const std::vector<std::vector<CocoDetection>>& files,
               const CocoDataset* gt)
      : o_(o), files_(files), gt_(gt) {
    nms_.iou_threshold = given(o.iou_thr_opt) ? o.iou_thr : 0.5;
    soft_.iou_threshold = given(o.iou_thr_opt) ? o.iou_thr : 0.3;
    soft_.sigma = given(o.sigma_opt) ? o.sigma : 0.5;
    soft_.min_score = given(o.min_score_opt) ? o.min_score : 1e-3;
    soft_.method = parse_soft_nms_method(o.soft_method);
    matrix_.kernel = parse_matrix_nms_kernel(o.kernel);
    matrix_.sigma = given(o.sigma_opt) ? o.sigma : 2.0;
    matrix_.post_threshold = given(o.min_score_opt) ? o.min_score : 0.0;
    wbf_.iou_threshold = given(o.iou_thr_opt) ? o.iou_thr : 0.55;
    wbf_.conf_type = parse_wbf_conf_type(o.conf_type);
    if (given(o.weights_opt)) weights_ = o.weights;
  }

  std::vector<CocoDetection> run(const ImageGroup& group) const {
    std::vector<CocoDetection> out;
    if (o_.method == "wbf") {
      out = fuse(group);
    } else {
      // the other methods see the files' detections concatenated
      std::vector<const CocoDetection*> dets;
      for (size_t f = 0; f < files_.size(); ++f) {
        for (const size_t i : group.per_file[f]) {
          if (keep_input(files_[f][i])) dets.push_back(&files_[f][i]);
        }
      }
      if (o_.method == "nms") {
        out = run_nms(dets);
      } else if (o_.method == "soft-nms") {
        out = run_soft_nms(dets);
      } else {
        out = run_matrix_nms(dets);
      }
    }
    std::stable_sort(out.begin(), out.end(), [](const CocoDetection& a, const CocoDetection& b) {
      return a.score > b.score;
    });
    if (given(o_.max_dets_opt) && out.size() > static_cast<size_t>(o_.max_dets)) {
      out.resize(static_cast<size_t>(o_.max_dets));
    }
    return out;
  }

 private:
  bool keep_input(const CocoDetection& d) const {
    return !given(o_.score_thr_opt) || d.score >= o_.score_thr;
  }

  static void gather(const std::vector<const CocoDetection*>& dets, std::vector<double>& boxes,
                     std::vector<double>& scores, std::vector<int64_t>& labels) {
    boxes.resize(dets.size() * 4);
    scores.resize(dets.size());
    labels.resize(dets.size());
    for (size_t i = 0; i < dets.size(); ++i) {
      xywh_to_xyxy(dets[i]->bbox, 1.0, 1.0, &boxes[i * 4]);
      scores[i] = dets[i]->score;
      labels[i] = dets[i]->category_id;
    }
  }

  std::vector<CocoDetection> run_nms(const std::vector<const CocoDetection*>& dets) const {
    std::vector<double> boxes, scores;
    std::vector<int64_t> labels;
    gather(dets, boxes, scores, labels);
    std::vector<CocoDetection> out;
    for (const int64_t i :
         batched_nms(boxes.data(), scores.data(), labels.data(), dets.size(), nms_)) {
      out.push_back(*dets[static_cast<size_t>(i)]);
    }
    return out;
  }

  std::vector<CocoDetection> run_soft_nms(const std::vector<const CocoDetection*>& dets) const {
    // per category, in ascending category id
    std::vector<size_t> order(dets.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return dets[a]->category_id < dets[b]->category_id;
    });
    std::vector<CocoDetection> out;
    for (size_t begin = 0; begin < order.size();) {
      size_t end = begin;
      while (end < order.size() &&
             dets[order[end]]->category_id == dets[order[begin]]->category_id) {
        ++end;
      }
      std::vector<const CocoDetection*> cls;
      for (size_t j = begin; j < end; ++j) cls.push_back(dets[order[j]]);
      std::vector<double> boxes, scores;
      std::vector<int64_t> labels;
      gather(cls, boxes, scores, labels);
      const SoftNmsResult<double> r = soft_nms(boxes.data(), scores.data(), cls.size(), soft_);
      for (size_t j = 0; j < r.indices.size(); ++j) {
        CocoDetection d = *cls[static_cast<size_t>(r.indices[j])];
        d.score = r.scores[j];
        out.push_back(d);
      }
      begin = end;
    }
    return out;
  }

  std::vector<CocoDetection> run_matrix_nms(const std::vector<const CocoDetection*>& dets) const {
    std::vector<double> boxes, scores;
    std::vector<int64_t> labels;
    gather(dets, boxes, scores, labels);
    const MatrixNmsResult<double> r =
        matrix_nms(boxes.data(), scores.data(), labels.data(), dets.size(), matrix_);
    std::vector<CocoDetection> out;
    for (size_t j = 0; j < r.indices.size(); ++j) {
      CocoDetection d = *dets[static_cast<size_t>(r.indices[j])];
      d.score = r.scores[j];
      out.push_back(d);
    }
    return out;
  }

  std::vector<CocoDetection> fuse(const ImageGroup& group) const {
    const auto it = gt_->image_index.find(group.image_id);
    SETDET_CHECK(it != gt_->image_index.end(), "image id ", group.image_id, " is not in ", o_.gt);
    const CocoImage& image = gt_->images[it->second];
    SETDET_CHECK(image.width > 0 && image.height > 0, o_.gt, ": image ", image.id, " has size ",
                 image.width, "x", image.height,
                 "; --method wbf needs positive widths and heights to normalise boxes");
    const double w = static_cast<double>(image.width), h = static_cast<double>(image.height);
    std::vector<std::vector<double>> boxes(files_.size()), scores(files_.size());
    std::vector<std::vector<int64_t>> labels(files_.size());
    std::vector<WbfInput<double>> models(files_.size());
    for (size_t f = 0; f < files_.size(); ++f) {
      for (const size_t i : group.per_file[f]) {
        const CocoDetection& d = files_[f][i];
        if (!keep_input(d)) continue;
        double b[4];
        xywh_to_xyxy(d.bbox, 1.0 / w, 1.0 / h, b);
        boxes[f].insert(boxes[f].end(), b, b + 4);
        scores[f].push_back(d.score);
        labels[f].push_back(d.category_id);
      }
      models[f] = {boxes[f].data(), scores[f].data(), labels[f].data(), scores[f].size()};
    }
    const WbfResult<double> r = weighted_boxes_fusion(models, weights_, wbf_);
    std::vector<CocoDetection> out(r.scores.size());
    for (size_t j = 0; j < out.size(); ++j) {
      const double* b = &r.boxes[j * 4];
      out[j].image_id = group.image_id;
      out[j].category_id = r.labels[j];
      out[j].bbox = {b[0] * w, b[1] * h, (b[2] - b[0]) * w, (b[3] - b[1]) * h};
      out[j].score = r.scores[j];
    }
    return out;
  }

  const DedupOptions& o_;
  const std::vector<std::vector<CocoDetection>>& files_;
  const CocoDataset* gt_;
  NmsOptions nms_;
  SoftNmsOptions soft_;
  MatrixNmsOptions matrix_;
  WbfOptions wbf_;
  std::vector<double> weights_;
};

int run_dedup(const DedupOptions& o) {
  validate(o);
  const auto start = std::chrono::steady_clock::now();
  CocoDataset gt;
  if (!o.gt.empty()) gt = load_coco_instances(o.gt);
  std::vector<std::vector<CocoDetection>> files;
  size_t num_in = 0;
  for (const std::string& path : o.dt) {
    files.push_back(load_coco_results(path, o.gt.empty() ? nullptr : &gt));
    num_in += files.back().size();
  }
  const std::vector<ImageGroup> groups = group_by_image(files);
  const Deduplicator dedup(o, files, o.gt.empty() ? nullptr : &gt);
  std::vector<std::vector<CocoDetection>> per_image(groups.size());
  parallel_for(0, static_cast<int64_t>(groups.size()), 16, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) {
      per_image[static_cast<size_t>(g)] = dedup.run(groups[static_cast<size_t>(g)]);
    }
  });
  std::vector<CocoDetection> out;
  size_t num_out = 0;
  for (const auto& dets : per_image) num_out += dets.size();
  out.reserve(num_out);
  for (auto& dets : per_image) out.insert(out.end(), dets.begin(), dets.end());
  write_coco_results(o.out, out);
  std::fprintf(stderr,
               "setdet dedup: %s, %zu file(s), %zu images, %zu -> %zu detections in %.3f s\n",
               o.method.c_str(), o.dt.size(), groups.size(), num_in, num_out,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

const RegisterCommand kDedup{
    "dedup",
    "duplicate removal on COCO results (nms, soft-nms, matrix-nms), or ensembling of several "
    "results files by weighted box fusion (wbf)",
    [](CLI::App& app) {
      auto o = std::make_shared<DedupOptions>();
      app.add_option("--dt", o->dt,
                     "COCO results JSON; repeat to ensemble several files (wbf fuses them, the "
                     "other methods concatenate them)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--method", o->method, "nms | soft-nms | matrix-nms | wbf")
          ->required()
          ->check(CLI::IsMember({"nms", "soft-nms", "matrix-nms", "wbf"}));
      app.add_option("--out", o->out, "output COCO results JSON (written atomically)")->required();
      app.add_option("--gt", o->gt,
                     "COCO instances JSON: image sizes for wbf (required there); elsewhere it "
                     "checks that every image id exists")
          ->check(CLI::ExistingFile);
      o->iou_thr_opt = app.add_option("--iou-thr", o->iou_thr,
                                      "IoU threshold (nms: suppress when > thr, default 0.5; "
                                      "soft-nms: decay when >= thr, "
                                      "default 0.3; wbf: join a cluster when > thr, default 0.55)")
                           ->default_str("")  // per method
                           ->check(kFinite);
      o->score_thr_opt = app.add_option("--score-thr", o->score_thr,
                                        "drop input detections with score < thr before dedup")
                             ->check(kFinite);
      o->max_dets_opt = app.add_option("--max-dets", o->max_dets,
                                       "keep at most this many detections per image (highest "
                                       "scores, over all categories; default: all)")
                           ->default_str("");
      o->sigma_opt =
          app.add_option(
                 "--sigma", o->sigma,
                 "gaussian decay: soft-nms s *= exp(-iou^2 / sigma) (default 0.5); matrix-nms "
                 "exp(-sigma * iou^2) (default 2.0)")
              ->default_str("")  // per method
              ->check(kFinite);
      o->min_score_opt = app.add_option("--min-score", o->min_score,
                                        "drop boxes whose decayed score falls below this "
                                        "(soft-nms, default 1e-3) or is <= "
                                        "this (matrix-nms, default 0)")
                             ->default_str("")  // per method
                             ->check(kFinite);
      o->soft_method_opt = app.add_option("--soft-method", o->soft_method,
                                          "soft-nms decay: linear (default) | gaussian | naive")
                               ->check(CLI::IsMember({"linear", "gaussian", "naive"}));
      o->kernel_opt =
          app.add_option("--kernel", o->kernel, "matrix-nms decay: gaussian (default) | linear")
              ->check(CLI::IsMember({"gaussian", "linear"}));
      o->conf_type_opt =
          app.add_option("--conf-type", o->conf_type,
                         "wbf fused score: avg (default) | max | box_and_model_avg | "
                         "absent_model_aware_avg")
              ->check(CLI::IsMember({"avg", "max", "box_and_model_avg", "absent_model_aware_avg"}));
      o->weights_opt = app.add_option("--weights", o->weights,
                                      "wbf: one weight per --dt file, e.g. 2,1 (default: all 1)")
                           ->delimiter(',')
                           ->check(kFinite);
      return [o] { return run_dedup(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
