#include "setdet/core/eval/numpy_sum.h"

#include <algorithm>

namespace setdet {
namespace {

double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.0;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (size_t j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

double numpy_sum(const std::vector<double>& v) {
  constexpr size_t kBuffer = 8192;
  double sum = 0.0;
  for (size_t b = 0; b < v.size(); b += kBuffer) {
    sum += pairwise_sum(v.data() + b, std::min(kBuffer, v.size() - b));
  }
  return sum;
}

double numpy_mean(const std::vector<double>& v) {
  return numpy_sum(v) / static_cast<double>(v.size());
}

}  // namespace setdet
