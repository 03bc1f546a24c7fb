// Rectangular linear sum assignment (shortest augmenting path, Crouse 2016) on a dense cost
// matrix: the optimal one-to-one matching used by Hungarian matchers and one-to-one assigners.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace setdet {

struct Assignment {
  std::vector<int64_t> rows;  // ascending
  std::vector<int64_t> cols;  // cols[k] is matched to rows[k]
  double total_cost = 0.0;
};

// cost: [n, m] row-major, finite (throws setdet::Error naming the entry otherwise). Returns
// min(n, m) pairs with the same optimal total as scipy.optimize.linear_sum_assignment, for
// n <= m and n > m. maximize = true maximises the total instead.
template <typename T>
Assignment linear_sum_assignment(const T* cost, size_t n, size_t m, bool maximize = false);

}  // namespace setdet
