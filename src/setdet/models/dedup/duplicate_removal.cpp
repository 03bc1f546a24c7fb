#include "setdet/models/dedup/duplicate_removal.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "setdet/core/dedup/matrix_nms.h"
#include "setdet/core/dedup/nms.h"
#include "setdet/core/dedup/soft_nms.h"

namespace setdet {
namespace {

at::Tensor long_tensor(const std::vector<int64_t>& v) {
  return at::tensor(v.empty() ? std::vector<int64_t>{} : v, at::kLong)
      .reshape({static_cast<int64_t>(v.size())});
}

void check_type(const std::string& type, const std::string& where) {
  const auto& known = DuplicateRemovalConfig::known_types();
  SETDET_CHECK(std::find(known.begin(), known.end(), type) != known.end() || type == "learned",
               where, ": unknown duplicate removal '", type,
               "' (known: nms, soft_nms, matrix_nms, learned, none)");
}

void validate(const DuplicateRemovalConfig& c, const std::string& where) {
  check_type(c.type, where);
  SETDET_CHECK(std::isfinite(c.iou_threshold) && c.iou_threshold >= 0 && c.iou_threshold <= 1,
               where, ": iou_threshold must be in [0, 1], got ", c.iou_threshold);
  SETDET_CHECK(std::isfinite(c.sigma) && c.sigma > 0, where, ": sigma must be > 0, got ", c.sigma);
  SETDET_CHECK(std::isfinite(c.matrix_sigma) && c.matrix_sigma > 0, where,
               ": sigma must be > 0, got ", c.matrix_sigma);
  SETDET_CHECK(std::isfinite(c.min_score), where, ": min_score must be finite, got ", c.min_score);
  SETDET_CHECK(std::isfinite(c.post_threshold), where, ": post_threshold must be finite, got ",
               c.post_threshold);
  parse_soft_nms_method(c.method);
  parse_matrix_nms_kernel(c.kernel);
}

// Candidate indices grouped by label (class-aware) or one group (class-agnostic).
std::vector<std::vector<int64_t>> groups_of(const int64_t* labels, int64_t n, bool agnostic) {
  if (agnostic) {
    std::vector<int64_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), int64_t{0});
    return {all};
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return labels[a] < labels[b]; });
  std::vector<std::vector<int64_t>> groups;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || labels[order[i]] != labels[order[i - 1]]) groups.emplace_back();
    groups.back().push_back(order[i]);
  }
  return groups;
}

// Sorts (index, score) pairs by descending score (ties: lower index first), cuts to max.
KeptDetections sorted_kept(std::vector<std::pair<int64_t, float>> kept, int64_t max_per_img) {
  std::stable_sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
  if (max_per_img > 0 && static_cast<int64_t>(kept.size()) > max_per_img) kept.resize(max_per_img);
  std::vector<int64_t> idx;
  std::vector<float> sc;
  for (const auto& [i, s] : kept) {
    idx.push_back(i);
    sc.push_back(s);
  }
  KeptDetections out;
  out.indices = long_tensor(idx);
  out.scores = at::tensor(sc.empty() ? std::vector<float>{} : sc, at::kFloat)
                   .reshape({static_cast<int64_t>(sc.size())});
  return out;
}

}  // namespace

const std::vector<std::string>& DuplicateRemovalConfig::known_types() {
  static const std::vector<std::string> kTypes{"nms", "soft_nms", "matrix_nms", "none"};
  return kTypes;
}

DuplicateRemovalConfig duplicate_removal_from_config(const Config& cfg,
                                                     const DuplicateRemovalConfig& fallback) {
  cfg.check_keys({"type", "iou_threshold", "class_agnostic", "method", "sigma", "min_score",
                  "kernel", "post_threshold"});
  DuplicateRemovalConfig c = fallback;
  c.type = cfg.get<std::string>("type", c.type);
  check_type(c.type, cfg.where() + ".type");
  c.iou_threshold = cfg.get<double>("iou_threshold", c.iou_threshold);
  c.class_agnostic = cfg.get<bool>("class_agnostic", c.class_agnostic);
  c.method = cfg.get<std::string>("method", c.method);
  if (c.type == "matrix_nms") {
    c.matrix_sigma = cfg.get<double>("sigma", c.matrix_sigma);
  } else {
    c.sigma = cfg.get<double>("sigma", c.sigma);
  }
  c.min_score = cfg.get<double>("min_score", c.min_score);
  c.kernel = cfg.get<std::string>("kernel", c.kernel);
  c.post_threshold = cfg.get<double>("post_threshold", c.post_threshold);
  try {
    validate(c, cfg.where());
  } catch (const Error& e) {
    throw Error(std::string(e.what()).find(cfg.where()) == 0 ? e.what()
                                                             : cfg.where() + ": " + e.what());
  }
  return c;
}

DuplicateRemovalConfig parse_duplicate_removal(const std::string& spec, const std::string& origin,
                                               const DuplicateRemovalConfig& fallback) {
  const auto colon = spec.find(':');
  std::ostringstream yaml;
  yaml << "{type: " << spec.substr(0, colon);
  if (colon != std::string::npos) {
    std::stringstream rest(spec.substr(colon + 1));
    std::string kv;
    while (std::getline(rest, kv, ',')) {
      const auto eq = kv.find('=');
      SETDET_CHECK(eq != std::string::npos && eq > 0, origin, ": expected key=value after '",
                   spec.substr(0, colon), ":', got '", kv, "' in '", spec, "'");
      yaml << ", " << kv.substr(0, eq) << ": " << kv.substr(eq + 1);
    }
  }
  yaml << "}";
  return duplicate_removal_from_config(Config::parse(yaml.str(), origin + " '" + spec + "'"),
                                       fallback);
}

std::string DuplicateRemovalConfig::describe() const {
  const std::string agnostic = class_agnostic ? ", class-agnostic" : "";
  if (type == "nms") return fmt::format("nms(iou {:.2f}{})", iou_threshold, agnostic);
  if (type == "soft_nms") {
    return method == "gaussian" ? fmt::format("soft_nms(gaussian, sigma {:g}, min {:g}{})", sigma,
                                              min_score, agnostic)
                                : fmt::format("soft_nms({}, iou {:.2f}, min {:g}{})", method,
                                              iou_threshold, min_score, agnostic);
  }
  if (type == "matrix_nms") {
    return fmt::format("matrix_nms({}, sigma {:g}, post {:g}{})", kernel, matrix_sigma,
                       post_threshold, agnostic);
  }
  return type;
}

KeptDetections remove_duplicates(const at::Tensor& boxes_in, const at::Tensor& scores_in,
                                 const at::Tensor& labels_in, const DuplicateRemovalConfig& cfg,
                                 int64_t max_per_img) {
  TORCH_CHECK(boxes_in.dim() == 2 && boxes_in.size(1) == 4,
              "remove_duplicates: boxes must be [N, 4], got ", boxes_in.sizes());
  const int64_t n = boxes_in.size(0);
  TORCH_CHECK(scores_in.dim() == 1 && scores_in.size(0) == n && labels_in.dim() == 1 &&
                  labels_in.size(0) == n,
              "remove_duplicates: ", n, " boxes but scores ", scores_in.sizes(), " and labels ",
              labels_in.sizes());
  SETDET_CHECK(cfg.type != "learned",
               "duplicate removal 'learned' needs a detector with a trained duplicate-removal "
               "network (model.dedup_head)");
  const at::Tensor boxes = boxes_in.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor scores = scores_in.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor labels = labels_in.to(at::kCPU, at::kLong).contiguous();
  const float* b = boxes.data_ptr<float>();
  const float* s = scores.data_ptr<float>();
  const int64_t* l = labels.data_ptr<int64_t>();

  std::vector<std::pair<int64_t, float>> kept;
  if (cfg.type == "none") {
    for (int64_t i = 0; i < n; ++i) kept.emplace_back(i, s[i]);
  } else if (cfg.type == "nms") {
    NmsOptions opts;
    opts.iou_threshold = cfg.iou_threshold;
    std::vector<int64_t> keep;
    if (cfg.class_agnostic) {
      keep = nms(b, s, static_cast<size_t>(n), opts);
    } else {
      keep = batched_nms(b, s, l, static_cast<size_t>(n), opts);
    }
    // Already in torchvision's order (score descending, ties by index): keep it as is.
    if (max_per_img > 0 && static_cast<int64_t>(keep.size()) > max_per_img) {
      keep.resize(max_per_img);
    }
    KeptDetections out;
    out.indices = long_tensor(keep);
    out.scores = scores.index_select(0, out.indices);
    return out;
  } else if (cfg.type == "soft_nms") {
    SoftNmsOptions opts;
    opts.iou_threshold = cfg.iou_threshold;
    opts.sigma = cfg.sigma;
    opts.min_score = cfg.min_score;
    opts.method = parse_soft_nms_method(cfg.method);
    for (const auto& group : groups_of(l, n, cfg.class_agnostic)) {
      std::vector<float> gb, gs;
      gb.reserve(group.size() * 4);
      for (int64_t i : group) {
        gb.insert(gb.end(), b + 4 * i, b + 4 * i + 4);
        gs.push_back(s[i]);
      }
      const auto r = soft_nms(gb.data(), gs.data(), group.size(), opts);
      for (size_t k = 0; k < r.indices.size(); ++k)
        kept.emplace_back(group[r.indices[k]], r.scores[k]);
    }
  } else if (cfg.type == "matrix_nms") {
    MatrixNmsOptions opts;
    opts.kernel = parse_matrix_nms_kernel(cfg.kernel);
    opts.sigma = cfg.matrix_sigma;
    opts.post_threshold = cfg.post_threshold;
    opts.score_threshold = -1.0;  // the detector thresholded its candidates already
    const auto r = matrix_nms(b, s, cfg.class_agnostic ? nullptr : l, static_cast<size_t>(n), opts);
    for (size_t k = 0; k < r.indices.size(); ++k) kept.emplace_back(r.indices[k], r.scores[k]);
  } else {
    SETDET_CHECK(false, "remove_duplicates: unknown duplicate removal '", cfg.type, "'");
  }
  return sorted_kept(std::move(kept), max_per_img);
}

}  // namespace setdet
