#include "setdet/core/eval/vrd_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "setdet/core/error.h"
#include "setdet/core/eval/numpy_sum.h"
#include "setdet/core/io/csv.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

// ---- reading ----

// Checks one box given as doubles and rounds it to float32 as the reference stores it.
// `fail(k, message)` reports a problem with coordinate k (0 xmin, 1 ymin, 2 xmax, 3 ymax).
template <typename Fail>
VrdBox make_box(const std::array<double, 4>& v, Fail&& fail) {
  static const char* const kNames[] = {"xmin", "ymin", "xmax", "ymax"};
  for (int k = 0; k < 4; ++k) {
    if (!(v[k] >= 0.0 && v[k] <= 1.0)) {
      fail(k, detail::concat("expected a normalised coordinate in [0, 1], got ", v[k]));
    }
  }
  for (int k = 0; k < 2; ++k) {
    if (v[k] > v[k + 2]) {
      fail(k, detail::concat("box is inverted: ", kNames[k], " ", v[k], " > ", kNames[k + 2], " ",
                             v[k + 2]));
    }
  }
  return {static_cast<float>(v[0]), static_cast<float>(v[1]), static_cast<float>(v[2]),
          static_cast<float>(v[3])};
}

// Columns of a relationships file (ground truth or detections).
struct RelationColumns {
  size_t image, label1, label2, predicate;
  std::array<size_t, 4> box1, box2;  // xmin, ymin, xmax, ymax
  size_t score = 0;

  RelationColumns(const CsvReader& csv, bool with_score)
      : image(csv.column("ImageID")),
        label1(csv.column("LabelName1")),
        label2(csv.column("LabelName2")),
        predicate(csv.column("RelationshipLabel")),
        box1{csv.column("XMin1"), csv.column("YMin1"), csv.column("XMax1"), csv.column("YMax1")},
        box2{csv.column("XMin2"), csv.column("YMin2"), csv.column("XMax2"), csv.column("YMax2")} {
    if (with_score) score = csv.column("Score");
  }
};

// Interns the image id of consecutive rows of the same image once.
class ImageCache {
 public:
  explicit ImageCache(VrdNames& images) : images_(images) {}
  int32_t operator()(std::string_view id) {
    if (id != last_ || id_ < 0) {
      last_ = std::string(id);
      id_ = images_.intern(id);
    }
    return id_;
  }

 private:
  VrdNames& images_;
  std::string last_;
  int32_t id_ = -1;
};

void read_relations(CsvReader& csv, VrdData& data, bool detections) {
  const RelationColumns c(csv, detections);
  ImageCache image(data.images);
  auto& out = detections ? data.detections : data.ground_truth;
  CsvRecord row;
  while (csv.next(row)) {
    VrdRelation r;
    r.image = image(row.text(c.image));
    r.subject = data.classes.intern(row.text(c.label1));
    r.object = data.classes.intern(row.text(c.label2));
    r.predicate = data.predicates.intern(row.text(c.predicate));
    const auto read_box = [&row](const std::array<size_t, 4>& cols) {
      const std::array<double, 4> v{row.number(cols[0]), row.number(cols[1]), row.number(cols[2]),
                                    row.number(cols[3])};
      return make_box(v, [&](int k, const std::string& m) { row.fail(cols[k], m); });
    };
    r.subject_box = read_box(c.box1);
    r.object_box = read_box(c.box2);
    if (detections) {
      r.score = row.number(c.score);
      if (!std::isfinite(r.score)) row.fail(c.score, "expected a finite score");
    }
    out.push_back(r);
  }
}

VrdRelation make_relation(VrdData& data, std::string_view image, std::string_view label1,
                          std::string_view label2, std::string_view predicate,
                          const std::array<double, 4>& box1, const std::array<double, 4>& box2,
                          const char* what, size_t row) {
  for (const auto s : {image, label1, label2, predicate}) {
    SETDET_CHECK(!s.empty(), what, " row ", row,
                 ": image id, labels and predicate must be non-empty");
  }
  VrdRelation r;
  r.image = data.images.intern(image);
  r.subject = data.classes.intern(label1);
  r.object = data.classes.intern(label2);
  r.predicate = data.predicates.intern(predicate);
  r.subject_box = make_box(box1, [&](int, const std::string& m) {
    throw Error(detail::concat(what, " row ", row, ": box 1: ", m));
  });
  r.object_box = make_box(box2, [&](int, const std::string& m) {
    throw Error(detail::concat(what, " row ", row, ": box 2: ", m));
  });
  return r;
}

// ---- matching ----

// IoU with the reference's arithmetic (np_box_ops.iou on float32 boxes): intersection sides in
// float32, their product in float64; areas in float32, summed in float32; union and quotient in
// float64. Two zero-area boxes give NaN (0 / 0), as in the reference.
double reference_iou(const VrdBox& a, const VrdBox& b) {
  const float ih = std::min(a.ymax, b.ymax) - std::max(a.ymin, b.ymin);
  const float iw = std::min(a.xmax, b.xmax) - std::max(a.xmin, b.xmin);
  const double inter =
      std::max(0.0, static_cast<double>(ih)) * std::max(0.0, static_cast<double>(iw));
  const float area_a = (a.ymax - a.ymin) * (a.xmax - a.xmin);
  const float area_b = (b.ymax - b.ymin) * (b.xmax - b.xmin);
  const float area_sum = area_a + area_b;
  return inter / (static_cast<double>(area_sum) - inter);
}

// np.minimum: NaN if either is NaN.
double nan_min(double a, double b) {
  return (std::isnan(a) || std::isnan(b)) ? std::nan("") : std::min(a, b);
}

VrdBox enclosing(const VrdBox& a, const VrdBox& b) {
  return {std::min(a.xmin, b.xmin), std::min(a.ymin, b.ymin), std::max(a.xmax, b.xmax),
          std::max(a.ymax, b.ymax)};
}

enum Task : int { kRelationship = 0, kPhrase = 1, kNumTasks = 2 };

// Task IoU between a detection and a ground truth, np.minimum'd from 1.0 as the reference's
// _get_overlaps_and_scores_relation_tuples does (so an IoU above 1 from float32 rounding is 1).
double task_iou(Task task, const VrdRelation& d, const VrdBox& d_phrase, const VrdRelation& g,
                const VrdBox& g_phrase) {
  if (task == kPhrase) return nan_min(reference_iou(d_phrase, g_phrase), 1.0);
  return nan_min(reference_iou(d.object_box, g.object_box),
                 nan_min(reference_iou(d.subject_box, g.subject_box), 1.0));
}

// Index of the highest value, the first on ties; the first NaN if any (numpy's argmax).
size_t argmax_first(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t j = 0; j < v.size(); ++j) {
    if (std::isnan(v[j])) return j;
    if (v[j] > v[best]) best = j;
  }
  return best;
}

bool triplet_less(const VrdRelation& a, const VrdRelation& b) {
  if (a.subject != b.subject) return a.subject < b.subject;
  if (a.object != b.object) return a.object < b.object;
  return a.predicate < b.predicate;
}

bool same_triplet(const VrdRelation& a, const VrdRelation& b) {
  return a.subject == b.subject && a.object == b.object && a.predicate == b.predicate;
}

// Rows grouped by image: rows of image i are index[offset[i] .. offset[i + 1]), in input order.
struct ByImage {
  std::vector<int64_t> offset, index;

  ByImage(const std::vector<VrdRelation>& rows, size_t num_images) : offset(num_images + 1, 0) {
    for (const auto& r : rows) ++offset[static_cast<size_t>(r.image) + 1];
    std::partial_sum(offset.begin(), offset.end(), offset.begin());
    index.resize(rows.size());
    std::vector<int64_t> fill(offset.begin(), offset.end() - 1);
    for (size_t k = 0; k < rows.size(); ++k) index[fill[rows[k].image]++] = static_cast<int64_t>(k);
  }
  size_t count(size_t image) const {
    return static_cast<size_t>(offset[image + 1] - offset[image]);
  }
  const int64_t* begin(size_t image) const { return index.data() + offset[image]; }
};

bool contains(const std::vector<int32_t>& sorted, int32_t v) {
  return std::binary_search(sorted.begin(), sorted.end(), v);
}

// Per-detection outcome: kept by the class filter, and true positive in each task.
struct Outcome {
  std::vector<uint8_t> kept;
  std::array<std::vector<uint8_t>, kNumTasks> tp;
};

// ---- accumulation ----

// metrics.compute_precision_recall + compute_average_precision (VOC all points) on true-positive
// flags already in ranking order; num_gt > 0.
double voc_average_precision(const std::vector<uint8_t>& tp_ranked, int64_t num_gt) {
  const size_t n = tp_ranked.size();
  if (n == 0) return 0.0;
  std::vector<double> precision(n + 2), recall(n + 2);
  int64_t cum_tp = 0;
  for (size_t i = 0; i < n; ++i) {
    cum_tp += tp_ranked[i];
    precision[i + 1] = static_cast<double>(cum_tp) / static_cast<double>(i + 1);
    recall[i + 1] = static_cast<double>(cum_tp) / static_cast<double>(num_gt);
  }
  recall[0] = 0.0;
  precision[0] = 0.0;
  recall[n + 1] = 1.0;
  precision[n + 1] = 0.0;
  for (size_t i = n + 1; i-- > 0;) precision[i] = std::max(precision[i], precision[i + 1]);
  std::vector<double> terms;
  for (size_t i = 1; i < n + 2; ++i) {
    if (recall[i] != recall[i - 1]) terms.push_back((recall[i] - recall[i - 1]) * precision[i]);
  }
  return numpy_sum(terms);  // np.sum's order: AP equals the reference's to the last bit
}

// Ranking order: descending score, ties by input position.
void rank_by_score(std::vector<int64_t>& idx, const std::vector<VrdRelation>& dets) {
  std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
    const double sa = dets[a].score, sb = dets[b].score;
    return sa > sb || (sa == sb && a < b);
  });
}

}  // namespace

VrdNames::VrdNames(const VrdNames& other) { *this = other; }

VrdNames& VrdNames::operator=(const VrdNames& other) {
  if (this == &other) return *this;
  names_ = other.names_;
  ids_.clear();
  for (size_t i = 0; i < names_.size(); ++i) ids_.emplace(names_[i], static_cast<int32_t>(i));
  return *this;
}

int32_t VrdNames::intern(std::string_view name) {
  const auto it = ids_.find(name);
  if (it != ids_.end()) return it->second;
  const auto id = static_cast<int32_t>(names_.size());
  names_.emplace_back(name);
  ids_.emplace(names_.back(), id);
  return id;
}

int32_t VrdNames::find(std::string_view name) const {
  const auto it = ids_.find(name);
  return it == ids_.end() ? -1 : it->second;
}

void VrdData::add_ground_truth(std::string_view image, std::string_view label1,
                               std::string_view label2, std::string_view predicate,
                               const std::array<double, 4>& box1,
                               const std::array<double, 4>& box2) {
  ground_truth.push_back(make_relation(*this, image, label1, label2, predicate, box1, box2,
                                       "ground truth", ground_truth.size()));
}

void VrdData::add_image_label(std::string_view image, std::string_view label) {
  SETDET_CHECK(!image.empty() && !label.empty(), "image label row ", image_labels.size(),
               ": image id and label must be non-empty");
  image_labels.push_back({images.intern(image), classes.intern(label)});
}

void VrdData::add_detection(std::string_view image, std::string_view label1,
                            std::string_view label2, std::string_view predicate,
                            const std::array<double, 4>& box1, const std::array<double, 4>& box2,
                            double score) {
  SETDET_CHECK(std::isfinite(score), "detection row ", detections.size(),
               ": expected a finite score, got ", score);
  VrdRelation r = make_relation(*this, image, label1, label2, predicate, box1, box2, "detection",
                                detections.size());
  r.score = score;
  detections.push_back(r);
}

void read_vrd_ground_truth(CsvReader& csv, VrdData& data) { read_relations(csv, data, false); }

void read_vrd_detections(CsvReader& csv, VrdData& data) { read_relations(csv, data, true); }

void read_vrd_ground_truth(const std::string& path, VrdData& data) {
  CsvReader csv = CsvReader::open(path);
  read_vrd_ground_truth(csv, data);
}

void read_vrd_detections(const std::string& path, VrdData& data) {
  CsvReader csv = CsvReader::open(path);
  read_vrd_detections(csv, data);
}

void read_vrd_image_labels(const std::string& path, VrdData& data) {
  CsvReader csv = CsvReader::open(path);
  read_vrd_image_labels(csv, data);
}

void read_vrd_image_labels(CsvReader& csv, VrdData& data) {
  const size_t image_col = csv.column("ImageID");
  const size_t label_col = csv.column("LabelName");
  ImageCache image(data.images);
  CsvRecord row;
  while (csv.next(row)) {
    data.image_labels.push_back(
        {image(row.text(image_col)), data.classes.intern(row.text(label_col))});
  }
}

double VrdEvalResult::challenge_score() const {
  const auto& k = params.recall_at;
  const auto it = std::find(k.begin(), k.end(), 50);
  SETDET_CHECK(it != k.end(), "challenge score: Recall@50 was not computed (recall_at lacks 50)");
  return 0.4 * relationship.mean_ap + 0.2 * relationship.recall_at[it - k.begin()] +
         0.4 * phrase.mean_ap;
}

VrdEvalResult evaluate_vrd(const VrdData& data, const VrdEvalParams& params) {
  SETDET_CHECK(params.iou_threshold >= 0.0 && params.iou_threshold <= 1.0,
               "VRD evaluation: iou_threshold must be in [0, 1], got ", params.iou_threshold);
  for (const int64_t k : params.recall_at) {
    SETDET_CHECK(k > 0, "VRD evaluation: recall_at values must be positive, got ", k);
  }
  const auto& gts = data.ground_truth;
  const auto& dets = data.detections;
  const size_t num_images = data.images.size();
  const size_t num_k = params.recall_at.size();
  const ByImage gt_by_image(gts, num_images);
  const ByImage det_by_image(dets, num_images);

  // image-level labels per image, sorted and unique
  std::vector<std::vector<int32_t>> labels(num_images);
  for (const auto& l : data.image_labels) labels[l.image].push_back(l.label);

  VrdEvalResult result;
  result.params = params;
  result.num_ground_truth = static_cast<int64_t>(gts.size());
  result.num_detections = static_cast<int64_t>(dets.size());

  Outcome out;
  out.kept.assign(dets.size(), 0);
  for (auto& t : out.tp) t.assign(dets.size(), 0);
  // true positives among the first K kept detections, per image, task and K
  std::vector<int64_t> recall_hits(num_images * kNumTasks * num_k, 0);
  std::vector<uint8_t> known(num_images, 0);

  parallel_for(0, static_cast<int64_t>(num_images), 64, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> evaluable, negative, gt_classes;
    std::vector<int64_t> gt_idx, det_idx;
    std::vector<VrdBox> gt_phrase, det_phrase;
    std::vector<double> ious;
    std::vector<uint8_t> taken;
    for (int64_t image = begin; image < end; ++image) {
      const size_t img = static_cast<size_t>(image);
      auto& image_labels = labels[img];
      std::sort(image_labels.begin(), image_labels.end());
      image_labels.erase(std::unique(image_labels.begin(), image_labels.end()), image_labels.end());
      const size_t num_gt = gt_by_image.count(img);
      if (num_gt == 0 && image_labels.empty()) continue;  // not in the ground truth
      known[img] = 1;

      gt_idx.assign(gt_by_image.begin(img), gt_by_image.begin(img) + num_gt);
      gt_classes.clear();
      for (const int64_t g : gt_idx) {
        gt_classes.push_back(gts[g].subject);
        gt_classes.push_back(gts[g].object);
      }
      std::sort(gt_classes.begin(), gt_classes.end());
      gt_classes.erase(std::unique(gt_classes.begin(), gt_classes.end()), gt_classes.end());
      evaluable.clear();
      std::set_union(image_labels.begin(), image_labels.end(), gt_classes.begin(), gt_classes.end(),
                     std::back_inserter(evaluable));
      negative.clear();
      std::set_difference(image_labels.begin(), image_labels.end(), gt_classes.begin(),
                          gt_classes.end(), std::back_inserter(negative));

      det_idx.clear();
      for (const int64_t* p = det_by_image.begin(img); p != det_by_image.begin(img + 1); ++p) {
        const VrdRelation& d = dets[*p];
        const bool keep = (contains(evaluable, d.subject) && contains(evaluable, d.object)) ||
                          contains(negative, d.subject) || contains(negative, d.object);
        if (!keep) continue;
        out.kept[*p] = 1;
        det_idx.push_back(*p);
      }
      if (det_idx.empty()) continue;

      // group by triplet: ground truth in input order, detections by descending score
      std::stable_sort(gt_idx.begin(), gt_idx.end(),
                       [&](int64_t a, int64_t b) { return triplet_less(gts[a], gts[b]); });
      std::sort(det_idx.begin(), det_idx.end(), [&](int64_t a, int64_t b) {
        if (!same_triplet(dets[a], dets[b])) return triplet_less(dets[a], dets[b]);
        return dets[a].score > dets[b].score || (dets[a].score == dets[b].score && a < b);
      });
      gt_phrase.resize(gt_idx.size());
      for (size_t j = 0; j < gt_idx.size(); ++j) {
        gt_phrase[j] = enclosing(gts[gt_idx[j]].subject_box, gts[gt_idx[j]].object_box);
      }
      det_phrase.resize(det_idx.size());
      for (size_t i = 0; i < det_idx.size(); ++i) {
        det_phrase[i] = enclosing(dets[det_idx[i]].subject_box, dets[det_idx[i]].object_box);
      }
      size_t g0 = 0;
      for (size_t d0 = 0; d0 < det_idx.size();) {
        const VrdRelation& key = dets[det_idx[d0]];
        size_t d1 = d0 + 1;
        while (d1 < det_idx.size() && same_triplet(dets[det_idx[d1]], key)) ++d1;
        while (g0 < gt_idx.size() && triplet_less(gts[gt_idx[g0]], key)) ++g0;
        size_t g1 = g0;
        while (g1 < gt_idx.size() && same_triplet(gts[gt_idx[g1]], key)) ++g1;
        if (g1 > g0) {
          for (const Task task : {kRelationship, kPhrase}) {
            taken.assign(g1 - g0, 0);
            for (size_t i = d0; i < d1; ++i) {
              const VrdRelation& d = dets[det_idx[i]];
              ious.resize(g1 - g0);
              for (size_t j = g0; j < g1; ++j) {
                ious[j - g0] = task_iou(task, d, det_phrase[i], gts[gt_idx[j]], gt_phrase[j]);
              }
              const size_t best = argmax_first(ious);
              if (ious[best] >= params.iou_threshold && !taken[best]) {
                taken[best] = 1;
                out.tp[task][det_idx[i]] = 1;
              }
            }
          }
        }
        d0 = d1;
      }

      // Recall@K: the image's first K kept detections by score
      rank_by_score(det_idx, dets);
      for (int t = 0; t < kNumTasks; ++t) {
        for (size_t k = 0; k < num_k; ++k) {
          const size_t top = std::min(det_idx.size(), static_cast<size_t>(params.recall_at[k]));
          int64_t hits = 0;
          for (size_t i = 0; i < top; ++i) hits += out.tp[t][det_idx[i]];
          recall_hits[(img * kNumTasks + t) * num_k + k] = hits;
        }
      }
    }
  });

  result.num_images = std::count(known.begin(), known.end(), 1);
  for (int64_t k = 0; k < static_cast<int64_t>(dets.size()); ++k)
    result.num_kept_detections += out.kept[k];

  // ground-truth count per predicate, and the order in which the reference's dict first sees
  // each predicate (images by ImageID, then predicate name) for the mean's summation order
  const size_t num_predicates = data.predicates.size();
  std::vector<int64_t> gt_count(num_predicates, 0);
  for (const auto& g : gts) ++gt_count[g.predicate];
  std::vector<int64_t> image_rank(num_images);
  std::iota(image_rank.begin(), image_rank.end(), 0);
  std::sort(image_rank.begin(), image_rank.end(), [&](int64_t a, int64_t b) {
    return data.images.name(static_cast<int32_t>(a)) < data.images.name(static_cast<int32_t>(b));
  });
  std::vector<int64_t> rank_of(num_images);
  for (size_t r = 0; r < num_images; ++r) rank_of[image_rank[r]] = static_cast<int64_t>(r);
  std::vector<int64_t> first_seen(num_predicates, std::numeric_limits<int64_t>::max());
  for (const auto& g : gts) {
    first_seen[g.predicate] = std::min(first_seen[g.predicate], rank_of[g.image]);
  }
  std::vector<int32_t> with_gt;
  for (size_t p = 0; p < num_predicates; ++p) {
    if (gt_count[p] > 0) with_gt.push_back(static_cast<int32_t>(p));
  }
  std::sort(with_gt.begin(), with_gt.end(), [&](int32_t a, int32_t b) {
    if (first_seen[a] != first_seen[b]) return first_seen[a] < first_seen[b];
    return data.predicates.name(a) < data.predicates.name(b);
  });

  // kept detections per predicate (input order), ranked per predicate in parallel
  std::vector<std::vector<int64_t>> per_predicate(num_predicates);
  std::vector<int64_t> all_kept;
  for (int64_t k = 0; k < static_cast<int64_t>(dets.size()); ++k) {
    if (!out.kept[k]) continue;
    per_predicate[dets[k].predicate].push_back(k);
    all_kept.push_back(k);
  }
  std::vector<std::array<double, kNumTasks>> ap(with_gt.size());
  parallel_for(0, static_cast<int64_t>(with_gt.size()) + 1, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> flags;
    for (int64_t i = begin; i < end; ++i) {
      if (i == static_cast<int64_t>(with_gt.size())) {
        rank_by_score(all_kept, dets);  // the pooled ranking for weighted AP
        continue;
      }
      auto& idx = per_predicate[with_gt[i]];
      rank_by_score(idx, dets);
      for (int t = 0; t < kNumTasks; ++t) {
        flags.resize(idx.size());
        for (size_t j = 0; j < idx.size(); ++j) flags[j] = out.tp[t][idx[j]];
        ap[i][t] = voc_average_precision(flags, gt_count[with_gt[i]]);
      }
    }
  });

  const int64_t total_gt = static_cast<int64_t>(gts.size());
  for (int t = 0; t < kNumTasks; ++t) {
    VrdTaskResult& task = t == kRelationship ? result.relationship : result.phrase;
    std::vector<double> aps;
    for (size_t i = 0; i < with_gt.size(); ++i) {
      task.ap_per_predicate[data.predicates.name(with_gt[i])] = ap[i][t];
      aps.push_back(ap[i][t]);
    }
    task.mean_ap = aps.empty() ? 0.0 : numpy_mean(aps);
    if (total_gt > 0) {
      std::vector<uint8_t> flags(all_kept.size());
      for (size_t j = 0; j < all_kept.size(); ++j) flags[j] = out.tp[t][all_kept[j]];
      task.weighted_ap = voc_average_precision(flags, total_gt);
    }
    task.recall_at.assign(num_k, 0.0);
    for (size_t k = 0; k < num_k && total_gt > 0; ++k) {
      int64_t hits = 0;
      for (size_t img = 0; img < num_images; ++img)
        hits += recall_hits[(img * kNumTasks + t) * num_k + k];
      task.recall_at[k] = static_cast<double>(hits) / static_cast<double>(total_gt);
    }
  }
  return result;
}

}  // namespace setdet
