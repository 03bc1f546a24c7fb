// The spatio-semantic features of a candidate pair (Open Images 2019 VRD winner, Sec. 2.2):
//   1. object spatial features, subject then object: box, centre, size, aspect, class id;
//   2. object semantic features: how often each predicate has this class as subject / as object;
//   3. pairwise spatial features: relative position (absolute and in units of either object's
//      size), relative scale, IoU and overlap fractions, centre distance and angle, the four gaps
//      between the boxes' sides, the union box;
//   4. pairwise semantic features: how often the two classes appear together in an image and the
//      rate of each predicate among training pairs of these two classes;
// and the number of objects in the image. Boxes are normalised to [0, 1]; the statistics come
// from the training split's ground truth.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "setdet/vrd/vrd_split.h"

namespace setdet {

struct PairStatistics {
  int32_t num_classes = 0, num_predicates = 0;
  // [C, C, P]: among ordered pairs of training objects with classes (s, o) in one image, the
  // fraction with predicate p, smoothed by one pair at the overall rate of p.
  std::vector<float> predicate_given_pair;
  std::vector<float> predicate_given_subject;  // [C, P]: the same over pairs with subject class s
  std::vector<float> predicate_given_object;   // [C, P]: over pairs with object class o
  // [C, C]: of the training images holding class s, the fraction also holding another object of
  // class o.
  std::vector<float> cooccurrence;

  static PairStatistics from_split(const VrdSplit& train);
  // JSON text; from_json reads it back exactly (errors name `origin` and the key).
  std::string to_json() const;
  static PairStatistics from_json(const std::string& text, const std::string& origin);
};

// Names of the features, in order, for a pipeline with these predicates.
std::vector<std::string> pair_feature_names(const std::vector<std::string>& predicates);

// The features of the pair (subject s, object o) of `objects` (one image) into
// out[0 .. pair_feature_names(P).size()).
void pair_features(const std::vector<VrdObject>& objects, int32_t s, int32_t o,
                   const PairStatistics& stats, float* out);

}  // namespace setdet
