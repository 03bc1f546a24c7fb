// One split of a visual-relationship dataset as the VRD pipeline reads it: the images (COCO
// instances JSON: file names, sizes, object boxes and classes) and the relationships between those
// objects (Open Images VRD CSV), plus the candidate pairs the relationship models score and their
// labels.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace setdet {

// An object: a ground-truth box or a detection. Boxes are xyxy normalised to [0, 1].
struct VrdObject {
  int32_t label = 0;  // object class (VrdSplit::classes)
  std::array<float, 4> box{};
  float score = 1.0f;  // detection confidence; 1 for ground truth
};

// A relationship between two ground-truth objects of one image.
struct VrdPairRelation {
  int32_t subject = 0, object = 0;  // VrdImageRecord::objects
  int32_t predicate = 0;            // VrdSplit::predicates
};

// An attribute ("is" row) of a ground-truth object.
struct VrdObjectAttribute {
  int32_t object = 0;
  std::string attribute;
};

struct VrdImageRecord {
  std::string id;  // Open Images ImageID = the file name's stem
  std::string path;
  int64_t width = 0, height = 0;
  std::vector<VrdObject> objects;  // ground truth (none when the split has no annotations)
  std::vector<VrdPairRelation> relations;
  std::vector<VrdObjectAttribute> attributes;
};

struct VrdSplit {
  std::vector<std::string> classes;     // object classes, COCO category order (by id)
  std::vector<std::string> predicates;  // pair predicates (every RelationshipLabel except "is")
  std::vector<VrdImageRecord> images;
};

struct VrdSplitFiles {
  std::string instances;      // COCO instances JSON
  std::string images;         // directory of the image files
  std::string relationships;  // VRD ground-truth CSV; "" for a split without relationships
};

// Reads a split. `predicates`: the pipeline's predicate list (from the training split); empty:
// every RelationshipLabel of this split except "is", sorted. A relationship whose predicate is not
// in a non-empty list is an error, as is a row whose boxes and classes match no object of its image
// (boxes within 1e-4 of the image size), a row for an image that is not in the instances file, and
// a class unknown to the instances file.
VrdSplit read_vrd_split(const VrdSplitFiles& files,
                        const std::vector<std::string>& predicates = {});

// Ordered pairs (subject, object), subject != object, of the objects of one image with score >=
// min_score among the max_objects highest-scoring ones (ties by index).
std::vector<std::array<int32_t, 2>> candidate_pairs(const std::vector<VrdObject>& objects,
                                                    float min_score, int32_t max_objects);

// IoU of two normalised xyxy boxes (0 for zero-area boxes).
float box_iou(const std::array<float, 4>& a, const std::array<float, 4>& b);

// For each object of `objects` (e.g. detections), the ground-truth objects of `image` it stands
// for: same class and IoU >= iou_threshold (the challenge metric's rule for a true positive).
std::vector<std::vector<int32_t>> match_to_ground_truth(const std::vector<VrdObject>& objects,
                                                        const VrdImageRecord& image,
                                                        float iou_threshold = 0.5f);

// Labels [pairs x predicates] (0 / 1) of candidate pairs of `objects`: 1 when the pair stands for a
// ground-truth relationship of that predicate (through `matches`, from match_to_ground_truth, or
// the identity when `objects` are the image's ground truth and `matches` is empty).
std::vector<uint8_t> pair_labels(const VrdImageRecord& image,
                                 const std::vector<std::array<int32_t, 2>>& pairs,
                                 const std::vector<std::vector<int32_t>>& matches,
                                 int64_t num_predicates);

}  // namespace setdet
