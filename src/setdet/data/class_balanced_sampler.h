// Class-balanced sampling of the Open Images 2019 VRD winner (Sec. 3, Eq. 3): with n_k the number
// of training images holding class k, each draw picks class k with probability
//
//   p(k) = min(n_k, N) / sum_i min(n_i, N)
//
// and then one of the n_k images holding k uniformly; an epoch is dataset.size() such draws (with
// replacement). N -> infinity gives each class its share of image occurrences (Eq. 2); small N
// approaches the uniform class distribution. Config: {type: ClassBalancedSampler, cap: N}.
#pragma once

#include <cstdint>
#include <vector>

#include "setdet/data/sampler.h"

namespace setdet {

class ClassBalancedSampler : public DataSampler {
 public:
  explicit ClassBalancedSampler(int64_t cap);

  std::vector<int64_t> epoch_order(const Dataset& dataset, uint64_t seed,
                                   int64_t epoch) const override;

  // p(k) for every class 0..C-1 of `dataset` (0 for classes without images).
  std::vector<double> class_probabilities(const Dataset& dataset) const;
  int64_t cap() const { return cap_; }

 private:
  // Indices of the images holding each class (each image once per class).
  static std::vector<std::vector<int64_t>> images_per_class(const Dataset& dataset);
  std::vector<double> probabilities(const std::vector<std::vector<int64_t>>& images) const;

  int64_t cap_;
};

}  // namespace setdet
