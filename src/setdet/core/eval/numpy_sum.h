// numpy's float64 add.reduce order, so that metrics summed over arrays equal their numpy
// references to the last bit (pycocotools' np.mean, object_detection's np.sum in VOC AP).
#pragma once

#include <cstddef>
#include <vector>

namespace setdet {

// np.sum of a contiguous float64 array: pairwise summation (8 accumulators, blocks of 128)
// inside each 8192-element buffer chunk, the chunk sums added in order.
double numpy_sum(const std::vector<double>& v);

// np.mean: numpy_sum / size (NaN for an empty vector, as numpy).
double numpy_mean(const std::vector<double>& v);

}  // namespace setdet
