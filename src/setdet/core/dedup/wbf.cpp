#include "setdet/core/dedup/wbf.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <unordered_map>

#include "setdet/core/error.h"
#include "setdet/core/parallel.h"

namespace setdet {

WbfConfType parse_wbf_conf_type(const std::string& s) {
  if (s == "avg") return WbfConfType::kAvg;
  if (s == "max") return WbfConfType::kMax;
  if (s == "box_and_model_avg") return WbfConfType::kBoxAndModelAvg;
  if (s == "absent_model_aware_avg") return WbfConfType::kAbsentModelAware;
  throw Error(detail::concat(
      "weighted_boxes_fusion: conf_type must be one of \"avg\", \"max\", \"box_and_model_avg\", "
      "\"absent_model_aware_avg\", got \"",
      s, "\""));
}

namespace {

// One prefiltered detection (ensemble_boxes' row [label, score * weight, weight, model, box]).
struct WbfBox {
  double score;  // score * model weight
  double weight;
  size_t model;
  double box[4];
};

// A cluster and its fused box. As in ensemble_boxes 1.0.9 (get_weighted_box), the fused
// coordinates are a float32 running sum of score * coordinate divided (in float32) by the
// float64 sum of scores, and the fused score / weight are stored as float32; a cluster with a
// single member keeps that member's float64 values. When the scores sum to 0 (ensemble_boxes:
// 0/0 = NaN) the fused box is the plain mean of the members.
struct WbfCluster {
  std::vector<size_t> members;
  double box[4];
  double score;   // the member's score * weight, or the fused float32 score
  double weight;  // the member's weight, or the float32 sum of the members' weights
  float acc[4] = {0, 0, 0, 0};
  double plain_sum[4] = {0, 0, 0, 0};
  double conf_sum = 0, conf_max = 0, weight_sum = 0;
};

double iou_f64(const double* a, const double* b) {
  const double iw = std::max(std::min(a[2], b[2]) - std::max(a[0], b[0]), 0.0);
  const double ih = std::max(std::min(a[3], b[3]) - std::max(a[1], b[1]), 0.0);
  const double inter = iw * ih;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

// Rounds to float32 as a numpy float32 store does. Through a volatile: GCC 12 -O2 (SLP
// vectorisation) was seen to store the unrounded double here for a plain double -> float ->
// double cast.
double to_float32(double x) {
  volatile float f = static_cast<float>(x);
  return f;
}

void add_member(WbfCluster* c, const WbfBox& b, size_t id, WbfConfType conf_type) {
  c->members.push_back(id);
  for (int k = 0; k < 4; ++k) {
    c->acc[k] = static_cast<float>(static_cast<double>(c->acc[k]) + b.score * b.box[k]);
    c->plain_sum[k] += b.box[k];
  }
  c->conf_sum += b.score;
  c->conf_max = c->members.size() == 1 ? b.score : std::max(c->conf_max, b.score);
  c->weight_sum += b.weight;
  if (c->members.size() == 1) {
    std::copy(b.box, b.box + 4, c->box);
    c->score = b.score;
    c->weight = b.weight;
    return;
  }
  const float conf32 = static_cast<float>(c->conf_sum);
  const double count = static_cast<double>(c->members.size());
  for (int k = 0; k < 4; ++k) {
    c->box[k] = conf32 != 0.0f ? static_cast<double>(c->acc[k] / conf32) : c->plain_sum[k] / count;
  }
  const double s = conf_type == WbfConfType::kMax ? c->conf_max : c->conf_sum / count;
  c->score = to_float32(s);
  c->weight = to_float32(c->weight_sum);
}

}  // namespace

template <typename T>
WbfResult<T> weighted_boxes_fusion(const std::vector<WbfInput<T>>& models,
                                   const std::vector<double>& weights, const WbfOptions& opts) {
  const char* fn = "weighted_boxes_fusion";
  SETDET_CHECK(opts.iou_threshold >= 0.0 && opts.iou_threshold <= 1.0, fn,
               ": iou_threshold must be in [0, 1], got ", opts.iou_threshold);
  SETDET_CHECK(std::isfinite(opts.skip_box_threshold), fn,
               ": skip_box_threshold must be finite, got ", opts.skip_box_threshold);
  SETDET_CHECK(weights.empty() || weights.size() == models.size(), fn,
               ": weights must be empty or have one entry per model (", models.size(), "), got ",
               weights.size());
  std::vector<double> w(models.size(), 1.0);
  for (size_t t = 0; t < weights.size(); ++t) {
    SETDET_CHECK(std::isfinite(weights[t]) && weights[t] > 0.0, fn, ": weights[", t,
                 "] must be a finite number > 0, got ", weights[t]);
    w[t] = weights[t];
  }
  double weight_total = 0, weight_max = 0;
  for (const double x : w) weight_total += x, weight_max = std::max(weight_max, x);

  // Prefilter (ensemble_boxes.prefilter_boxes): skip score < skip_box_threshold, swap inverted
  // coordinates, clip to [0, 1], drop zero-area boxes; group by label in order of appearance.
  std::vector<WbfBox> all;
  std::vector<int64_t> group_labels;
  std::vector<std::vector<size_t>> groups;
  std::unordered_map<int64_t, size_t> group_of;
  for (size_t t = 0; t < models.size(); ++t) {
    const WbfInput<T>& m = models[t];
    if (m.n == 0) continue;
    SETDET_CHECK(m.boxes != nullptr && m.scores != nullptr && m.labels != nullptr, fn, ": model ",
                 t, " has n = ", m.n, " but null boxes, scores or labels");
    for (size_t j = 0; j < m.n; ++j) {
      for (int k = 0; k < 4; ++k) {
        SETDET_CHECK(std::isfinite(m.boxes[4 * j + k]), fn, ": model ", t, " boxes[", j,
                     "] has a non-finite coordinate (", m.boxes[4 * j + k], ")");
      }
      SETDET_CHECK(std::isfinite(m.scores[j]), fn, ": model ", t, " scores[", j,
                   "] is not finite (", m.scores[j], ")");
      const double score = static_cast<double>(m.scores[j]);
      if (score < opts.skip_box_threshold) continue;
      double b[4];
      for (int k = 0; k < 4; ++k) b[k] = static_cast<double>(m.boxes[4 * j + k]);
      if (b[2] < b[0]) std::swap(b[0], b[2]);
      if (b[3] < b[1]) std::swap(b[1], b[3]);
      for (double& x : b) x = std::min(1.0, std::max(0.0, x));
      if ((b[2] - b[0]) * (b[3] - b[1]) == 0.0) continue;
      WbfBox e{score * w[t], w[t], t, {b[0], b[1], b[2], b[3]}};
      const int64_t label = m.labels[j];
      auto it = group_of.find(label);
      if (it == group_of.end()) {
        it = group_of.emplace(label, groups.size()).first;
        groups.emplace_back();
        group_labels.push_back(label);
      }
      groups[it->second].push_back(all.size());
      all.push_back(e);
    }
  }

  std::vector<std::vector<WbfCluster>> clusters(groups.size());
  std::atomic<size_t> next_group{0};
  const int64_t workers = std::min<int64_t>(num_threads(), static_cast<int64_t>(groups.size()));
  parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (size_t g = next_group++; g < groups.size(); g = next_group++) {
      // ensemble_boxes sorts with argsort()[::-1]: descending, ties in reverse input order.
      std::vector<size_t> order = groups[g];
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return all[a].score < all[b].score; });
      std::reverse(order.begin(), order.end());
      std::vector<WbfCluster>& cl = clusters[g];
      for (const size_t id : order) {
        const WbfBox& b = all[id];
        // The cluster whose fused box has the highest IoU (first on ties), if > iou_threshold.
        size_t best = cl.size();
        double best_iou = opts.iou_threshold;
        for (size_t c = 0; c < cl.size(); ++c) {
          const double iou = iou_f64(cl[c].box, b.box);
          if (iou > best_iou) best_iou = iou, best = c;
        }
        if (best == cl.size()) cl.emplace_back();
        add_member(&cl[best], b, id, opts.conf_type);
      }
      for (WbfCluster& c : cl) {
        const double count = static_cast<double>(c.members.size());
        switch (opts.conf_type) {
          case WbfConfType::kBoxAndModelAvg: {
            std::vector<bool> seen(models.size(), false);
            double model_weights = 0;
            for (const size_t id : c.members) {
              if (!seen[all[id].model]) seen[all[id].model] = true, model_weights += all[id].weight;
            }
            c.score = c.score * count / c.weight;
            c.score = c.score * model_weights / weight_total;
            break;
          }
          case WbfConfType::kAbsentModelAware: {
            std::vector<bool> present(models.size(), false);
            for (const size_t id : c.members) present[all[id].model] = true;
            double absent = 0;
            for (size_t t = 0; t < models.size(); ++t) {
              if (!present[t]) absent += w[t];
            }
            c.score = c.score * count / (c.weight + absent);
            break;
          }
          case WbfConfType::kMax:
            c.score = c.score / weight_max;
            break;
          case WbfConfType::kAvg:
            if (opts.allows_overflow) {
              c.score = c.score * count / weight_total;
            } else {
              c.score =
                  c.score * std::min(static_cast<double>(models.size()), count) / weight_total;
            }
            break;
        }
      }
    }
  });

  // Output: all clusters (labels in order of appearance), sorted as argsort()[::-1] does:
  // descending score, ties in reverse order.
  struct Out {
    double score;
    int64_t label;
    const WbfCluster* c;
  };
  std::vector<Out> out;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (const WbfCluster& c : clusters[g]) out.push_back({c.score, group_labels[g], &c});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Out& a, const Out& b) { return a.score < b.score; });
  std::reverse(out.begin(), out.end());
  WbfResult<T> result;
  result.boxes.reserve(4 * out.size());
  for (const Out& o : out) {
    for (int k = 0; k < 4; ++k) result.boxes.push_back(static_cast<T>(o.c->box[k]));
    result.scores.push_back(static_cast<T>(o.score));
    result.labels.push_back(o.label);
  }
  return result;
}

template WbfResult<float> weighted_boxes_fusion<float>(const std::vector<WbfInput<float>>&,
                                                       const std::vector<double>&,
                                                       const WbfOptions&);
template WbfResult<double> weighted_boxes_fusion<double>(const std::vector<WbfInput<double>>&,
                                                         const std::vector<double>&,
                                                         const WbfOptions&);

}  // namespace setdet
