#include "setdet/vrd/pair_features.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "setdet/config/config.h"
#include "setdet/core/error.h"
#include "setdet/core/io/json_text.h"

namespace setdet {
namespace {

constexpr float kEps = 1e-9f;  // keeps ratios of zero-size boxes finite

const char* const kObjectFeatures[] = {"x0", "y0", "x1",         "y1",        "cx",   "cy",
                                       "w",  "h",  "log_aspect", "sqrt_area", "class"};
const char* const kPairFeatures[] = {"dx",
                                     "dy",
                                     "dx_by_subject_w",
                                     "dy_by_subject_h",
                                     "dx_by_object_w",
                                     "dy_by_object_h",
                                     "log_w_ratio",
                                     "log_h_ratio",
                                     "log_area_ratio",
                                     "iou",
                                     "overlap_of_subject",
                                     "overlap_of_object",
                                     "distance",
                                     "distance_by_sizes",
                                     "angle",
                                     "gap_right",
                                     "gap_left",
                                     "gap_below",
                                     "gap_above",
                                     "subject_bottom_to_object_top_by_object_h",
                                     "subject_top_to_object_bottom_by_object_h",
                                     "gap_right_by_min_w",
                                     "subject_cx_in_object_by_object_w",
                                     "dy_by_max_h",
                                     "union_w",
                                     "union_h"};

std::string floats_json(const std::vector<float>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_number(v[i]);
  return s + "]";
}

std::vector<float> floats_from(const Config& cfg, const std::string& key, size_t n) {
  const Config node = cfg[key];
  SETDET_CHECK(node.is_sequence() && node.size() == n, node.where(), ": expected ", n,
               " numbers, got ", node.is_sequence() ? node.size() : 0);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(node.at(i).as<double>());
  return out;
}

void object_features(const VrdObject& b, float*& out) {
  const float w = b.box[2] - b.box[0], h = b.box[3] - b.box[1];
  *out++ = b.box[0];
  *out++ = b.box[1];
  *out++ = b.box[2];
  *out++ = b.box[3];
  *out++ = 0.5f * (b.box[0] + b.box[2]);
  *out++ = 0.5f * (b.box[1] + b.box[3]);
  *out++ = w;
  *out++ = h;
  *out++ = std::log((w + kEps) / (h + kEps));
  *out++ = std::sqrt(std::max(0.0f, w * h));
  *out++ = static_cast<float>(b.label);
}

}  // namespace

PairStatistics PairStatistics::from_split(const VrdSplit& train) {
  PairStatistics st;
  const auto C = static_cast<int32_t>(train.classes.size());
  const auto P = static_cast<int32_t>(train.predicates.size());
  st.num_classes = C;
  st.num_predicates = P;
  std::vector<double> pairs(static_cast<size_t>(C) * C, 0.0),
      rel(static_cast<size_t>(C) * C * P, 0.0);
  std::vector<double> images_with(static_cast<size_t>(C), 0.0),
      both(static_cast<size_t>(C) * C, 0.0);
  std::vector<double> total_rel(static_cast<size_t>(P), 0.0);
  double total_pairs = 0.0;
  for (const auto& im : train.images) {
    const auto& obj = im.objects;
    for (size_t s = 0; s < obj.size(); ++s) {
      for (size_t o = 0; o < obj.size(); ++o) {
        if (s == o) continue;
        pairs[static_cast<size_t>(obj[s].label) * C + obj[o].label] += 1.0;
        total_pairs += 1.0;
      }
    }
    for (const auto& r : im.relations) {
      const size_t cs = obj[r.subject].label, co = obj[r.object].label;
      rel[(cs * C + co) * P + r.predicate] += 1.0;
      total_rel[r.predicate] += 1.0;
    }
    std::set<int32_t> present;
    for (const auto& o : obj) present.insert(o.label);
    for (int32_t a : present) {
      images_with[a] += 1.0;
      for (int32_t b : present) {
        int count_b = 0;
        for (const auto& o : obj) count_b += o.label == b;
        if (a != b || count_b >= 2) both[static_cast<size_t>(a) * C + b] += 1.0;
      }
    }
  }
  const auto rate = [&](double positives, double n, int32_t p) {
    const double prior = total_pairs > 0 ? total_rel[p] / total_pairs : 0.0;
    return static_cast<float>((positives + prior) / (n + 1.0));
  };
  st.predicate_given_pair.resize(rel.size());
  st.predicate_given_subject.assign(static_cast<size_t>(C) * P, 0.0f);
  st.predicate_given_object.assign(static_cast<size_t>(C) * P, 0.0f);
  for (int32_t p = 0; p < P; ++p) {
    for (int32_t a = 0; a < C; ++a) {
      double subj_rel = 0, subj_pairs = 0, obj_rel = 0, obj_pairs = 0;
      for (int32_t b = 0; b < C; ++b) {
        const size_t ab = static_cast<size_t>(a) * C + b, ba = static_cast<size_t>(b) * C + a;
        st.predicate_given_pair[ab * P + p] = rate(rel[ab * P + p], pairs[ab], p);
        subj_rel += rel[ab * P + p];
        subj_pairs += pairs[ab];
        obj_rel += rel[ba * P + p];
        obj_pairs += pairs[ba];
      }
      st.predicate_given_subject[static_cast<size_t>(a) * P + p] = rate(subj_rel, subj_pairs, p);
      st.predicate_given_object[static_cast<size_t>(a) * P + p] = rate(obj_rel, obj_pairs, p);
    }
  }
  st.cooccurrence.assign(static_cast<size_t>(C) * C, 0.0f);
  for (int32_t a = 0; a < C; ++a) {
    for (int32_t b = 0; b < C; ++b) {
      if (images_with[a] > 0) {
        st.cooccurrence[static_cast<size_t>(a) * C + b] =
            static_cast<float>(both[static_cast<size_t>(a) * C + b] / images_with[a]);
      }
    }
  }
  return st;
}

std::string PairStatistics::to_json() const {
  return "{\n  \"num_classes\": " + std::to_string(num_classes) +
         ",\n  \"num_predicates\": " + std::to_string(num_predicates) +
         ",\n  \"predicate_given_pair\": " + floats_json(predicate_given_pair) +
         ",\n  \"predicate_given_subject\": " + floats_json(predicate_given_subject) +
         ",\n  \"predicate_given_object\": " + floats_json(predicate_given_object) +
         ",\n  \"cooccurrence\": " + floats_json(cooccurrence) + "\n}\n";
}

PairStatistics PairStatistics::from_json(const std::string& text, const std::string& origin) {
  const Config cfg = Config::parse(text, origin);
  cfg.check_keys({"num_classes", "num_predicates", "predicate_given_pair",
                  "predicate_given_subject", "predicate_given_object", "cooccurrence"});
  PairStatistics st;
  st.num_classes = cfg.get<int32_t>("num_classes");
  st.num_predicates = cfg.get<int32_t>("num_predicates");
  SETDET_CHECK(st.num_classes > 0 && st.num_predicates > 0, origin,
               ": num_classes and num_predicates must be positive, got ", st.num_classes, " and ",
               st.num_predicates);
  const auto C = static_cast<size_t>(st.num_classes), P = static_cast<size_t>(st.num_predicates);
  st.predicate_given_pair = floats_from(cfg, "predicate_given_pair", C * C * P);
  st.predicate_given_subject = floats_from(cfg, "predicate_given_subject", C * P);
  st.predicate_given_object = floats_from(cfg, "predicate_given_object", C * P);
  st.cooccurrence = floats_from(cfg, "cooccurrence", C * C);
  return st;
}

std::vector<std::string> pair_feature_names(const std::vector<std::string>& predicates) {
  std::vector<std::string> names;
  for (const char* who : {"subject_", "object_"}) {
    for (const char* f : kObjectFeatures) names.push_back(who + std::string(f));
  }
  for (const char* f : kPairFeatures) names.emplace_back(f);
  for (const char* kind : {"rate_pair_", "rate_subject_", "rate_object_"}) {
    for (const auto& p : predicates) names.push_back(kind + p);
  }
  names.emplace_back("cooccurrence_subject_object");
  names.emplace_back("cooccurrence_object_subject");
  names.emplace_back("num_objects");
  return names;
}

void pair_features(const std::vector<VrdObject>& objects, int32_t s, int32_t o,
                   const PairStatistics& stats, float* out) {
  const VrdObject& a = objects[static_cast<size_t>(s)];
  const VrdObject& b = objects[static_cast<size_t>(o)];
  const int32_t C = stats.num_classes, P = stats.num_predicates;
  SETDET_CHECK(a.label >= 0 && a.label < C && b.label >= 0 && b.label < C,
               "pair_features: object classes ", a.label, ", ", b.label, " outside 0..", C - 1);
  object_features(a, out);
  object_features(b, out);

  const float aw = a.box[2] - a.box[0], ah = a.box[3] - a.box[1];
  const float bw = b.box[2] - b.box[0], bh = b.box[3] - b.box[1];
  const float acx = 0.5f * (a.box[0] + a.box[2]), acy = 0.5f * (a.box[1] + a.box[3]);
  const float bcx = 0.5f * (b.box[0] + b.box[2]), bcy = 0.5f * (b.box[1] + b.box[3]);
  const float dx = bcx - acx, dy = bcy - acy;
  const float iw = std::max(0.0f, std::min(a.box[2], b.box[2]) - std::max(a.box[0], b.box[0]));
  const float ih = std::max(0.0f, std::min(a.box[3], b.box[3]) - std::max(a.box[1], b.box[1]));
  const float inter = iw * ih, area_a = aw * ah, area_b = bw * bh;
  const float distance = std::hypot(dx, dy);
  *out++ = dx;
  *out++ = dy;
  *out++ = dx / (aw + kEps);
  *out++ = dy / (ah + kEps);
  *out++ = dx / (bw + kEps);
  *out++ = dy / (bh + kEps);
  *out++ = std::log((bw + kEps) / (aw + kEps));
  *out++ = std::log((bh + kEps) / (ah + kEps));
  *out++ = std::log((area_b + kEps) / (area_a + kEps));
  *out++ = box_iou(a.box, b.box);
  *out++ = inter / (area_a + kEps);
  *out++ = inter / (area_b + kEps);
  *out++ = distance;
  *out++ = distance / (std::sqrt(area_a) + std::sqrt(area_b) + kEps);
  *out++ = std::atan2(dy, dx);
  *out++ = b.box[0] - a.box[2];
  *out++ = a.box[0] - b.box[2];
  *out++ = b.box[1] - a.box[3];
  *out++ = a.box[1] - b.box[3];
  *out++ = (a.box[3] - b.box[1]) / (bh + kEps);
  *out++ = (a.box[1] - b.box[3]) / (bh + kEps);
  *out++ = (b.box[0] - a.box[2]) / (std::min(aw, bw) + kEps);
  *out++ = (acx - b.box[0]) / (bw + kEps);
  *out++ = (acy - bcy) / (std::max(ah, bh) + kEps);
  *out++ = std::max(a.box[2], b.box[2]) - std::min(a.box[0], b.box[0]);
  *out++ = std::max(a.box[3], b.box[3]) - std::min(a.box[1], b.box[1]);

  const size_t ab = static_cast<size_t>(a.label) * C + b.label;
  for (int32_t p = 0; p < P; ++p) *out++ = stats.predicate_given_pair[ab * P + p];
  for (int32_t p = 0; p < P; ++p) {
    *out++ = stats.predicate_given_subject[static_cast<size_t>(a.label) * P + p];
  }
  for (int32_t p = 0; p < P; ++p) {
    *out++ = stats.predicate_given_object[static_cast<size_t>(b.label) * P + p];
  }
  *out++ = stats.cooccurrence[ab];
  *out++ = stats.cooccurrence[static_cast<size_t>(b.label) * C + a.label];
  *out++ = static_cast<float>(objects.size());
}

}  // namespace setdet
