// The Open Images visual relationship detection (VRD) challenge metric, computed as TensorFlow's
// object_detection computes it (research/object_detection: metrics/oid_vrd_challenge_evaluation.py
// and _utils.py, utils/vrd_evaluation.py, per_image_vrd_evaluation.py, metrics.py, np_box_ops.py),
// for two tasks: "relationship" (both boxes must match) and "phrase" (the box enclosing both).
//
// Rules, as the reference applies them:
// - Inputs: ground-truth relationships (image, LabelName1, LabelName2, RelationshipLabel, box 1,
//   box 2), image-level labels (image, LabelName; their Confidence is never read: every row counts
//   as a verified label, whatever its value) and detections (the same plus a score).
// - Per image: evaluable classes = its image-level labels + every class in its ground-truth rows;
//   negative classes = its image-level labels found in none of its ground-truth rows. A detection
//   is kept when both its classes are evaluable, or when either is negative (a sure false
//   positive); otherwise it is dropped before anything else, including the Recall@K ranking.
//   Detections on images that have neither ground truth nor labels are dropped.
// - Matching per image and exact (LabelName1, LabelName2, RelationshipLabel) triplet, detections
//   by descending score. Relationship task: IoU = min(IoU of the subjects, IoU of the objects);
//   phrase task: each detection and ground truth replaced by the box enclosing its two boxes.
//   Each detection takes its highest-IoU ground truth (on an exact tie the one listed first; a NaN
//   IoU, from two zero-area boxes, counts as highest, as numpy's argmax has it); it is a true
//   positive if that IoU >= 0.5 and that ground truth is still free, else a false positive — no
//   fall-back to the next ground truth (of two identical ground-truth rows only the first can
//   ever match).
// - IoU arithmetic (decides the 0.5 boundary): coordinates are float32 (parsed as double, then
//   rounded); intersection sides are float32 differences clamped at 0, their product float64; each
//   area a float32 product of float32 sides, the two areas summed in float32; the union (that sum
//   minus the intersection) and the division in float64.
// - AP per predicate: the kept detections of all images pooled, VOC all-points AP (precision made
//   non-increasing, summed over the recall changes), the denominator the predicate's ground-truth
//   count. A predicate with ground truth but no kept detection has AP 0 and counts in the mean; a
//   predicate only in detections has no AP. mAP = plain mean over the predicates with ground
//   truth. weighted AP = the same AP over all predicates pooled.
// - Recall@K (K = 50, 100): per image the first K kept detections by score (true / false positive
//   decided on the whole image first); true positives summed over images / all ground-truth rows.
// - The challenge score (not printed by the reference): 0.4 mAP(relationship) +
//   0.2 Recall@50(relationship) + 0.4 mAP(phrase).
//
// Where the reference is undefined or breaks, setdet defines the behaviour:
// - Exactly tied scores: the reference orders them by numpy's unstable quicksort, reversed, so a
//   tie mixing true and false positives changes AP, matching and Recall@K arbitrarily. setdet
//   orders ties by input position (the detection listed first ranks first) everywhere: matching,
//   Recall@K and the pooled ranking.
// - No detections at all (a header-only file): the reference crashes; setdet gives AP 0 for every
//   predicate with ground truth and Recall@K 0.
// - No ground truth at all: the reference gives NaN; setdet gives mAP, weighted AP and Recall@K 0
//   (num_ground_truth tells the case apart).
// - Image ids are strings (pandas would parse "0012" and "12" both as the number 12).
// Boxes must lie in [0, 1] with min <= max (the reference rejects min > max only); a zero-area box
// is allowed.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace setdet {

class CsvReader;

// Normalised [0, 1] box, float32 as the reference stores it.
struct VrdBox {
  float xmin = 0, ymin = 0, xmax = 0, ymax = 0;
};

// Strings interned to dense ids (image ids, class names, predicates).
class VrdNames {
 public:
  VrdNames() = default;
  VrdNames(const VrdNames& other);
  VrdNames& operator=(const VrdNames& other);
  VrdNames(VrdNames&&) = default;
  VrdNames& operator=(VrdNames&&) = default;

  int32_t intern(std::string_view name);
  // -1 if absent.
  int32_t find(std::string_view name) const;
  const std::string& name(int32_t id) const { return names_[static_cast<size_t>(id)]; }
  size_t size() const { return names_.size(); }

 private:
  std::deque<std::string> names_;  // stable addresses: ids_ keys view into them
  std::unordered_map<std::string_view, int32_t> ids_;
};

// One relationship row: ground truth or detection (score used for detections only).
struct VrdRelation {
  int32_t image = 0;      // VrdData::images
  int32_t subject = 0;    // VrdData::classes (LabelName1)
  int32_t object = 0;     // VrdData::classes (LabelName2)
  int32_t predicate = 0;  // VrdData::predicates (RelationshipLabel)
  VrdBox subject_box, object_box;
  double score = 0.0;
};

struct VrdImageLabel {
  int32_t image = 0;
  int32_t label = 0;  // VrdData::classes
};

// Everything the metric reads; built from the three CSV files or in memory.
struct VrdData {
  VrdNames images, classes, predicates;
  std::vector<VrdRelation> ground_truth;
  std::vector<VrdImageLabel> image_labels;
  std::vector<VrdRelation> detections;

  // In-memory construction; boxes are [xmin, ymin, xmax, ymax] in [0, 1]. Bad boxes and
  // non-finite scores throw setdet::Error naming the row.
  void add_ground_truth(std::string_view image, std::string_view label1, std::string_view label2,
                        std::string_view predicate, const std::array<double, 4>& box1,
                        const std::array<double, 4>& box2);
  void add_image_label(std::string_view image, std::string_view label);
  void add_detection(std::string_view image, std::string_view label1, std::string_view label2,
                     std::string_view predicate, const std::array<double, 4>& box1,
                     const std::array<double, 4>& box2, double score);
};

// CSV readers (columns found by name, others ignored; errors name file, line and column):
// ground truth: ImageID, LabelName1, LabelName2, XMin1, XMax1, YMin1, YMax1, XMin2, XMax2, YMin2,
// YMax2, RelationshipLabel; image labels: ImageID, LabelName (Confidence not read); detections:
// the ground-truth columns + Score. Rows are appended to `data`.
void read_vrd_ground_truth(const std::string& path, VrdData& data);
void read_vrd_image_labels(const std::string& path, VrdData& data);
void read_vrd_detections(const std::string& path, VrdData& data);
// The same from an open reader (e.g. CsvReader::from_string).
void read_vrd_ground_truth(CsvReader& csv, VrdData& data);
void read_vrd_image_labels(CsvReader& csv, VrdData& data);
void read_vrd_detections(CsvReader& csv, VrdData& data);

struct VrdEvalParams {
  double iou_threshold = 0.5;
  std::vector<int64_t> recall_at = {50, 100};
};

struct VrdTaskResult {
  double mean_ap = 0.0;                            // mAP over the predicates with ground truth
  double weighted_ap = 0.0;                        // AP of all predicates pooled
  std::vector<double> recall_at;                   // one per VrdEvalParams::recall_at
  std::map<std::string, double> ap_per_predicate;  // predicates with ground truth
};

struct VrdEvalResult {
  VrdEvalParams params;
  VrdTaskResult relationship, phrase;
  int64_t num_images = 0;  // images with ground truth or labels
  int64_t num_ground_truth = 0;
  int64_t num_detections = 0;
  int64_t num_kept_detections = 0;  // after the evaluable / negative class filter

  // 0.4 mAP(relationship) + 0.2 Recall@50(relationship) + 0.4 mAP(phrase); needs 50 among
  // params.recall_at.
  double challenge_score() const;
};

// Evaluates data.detections against data.ground_truth / data.image_labels on
// setdet::num_threads() threads (the result does not depend on the thread count).
VrdEvalResult evaluate_vrd(const VrdData& data, const VrdEvalParams& params = {});

}  // namespace setdet
