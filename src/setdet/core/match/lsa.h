// Rectangular linear sum assignment on a dense cost matrix: the optimal one-to-one matching used
// by Hungarian matchers and one-to-one assigners. Same optimum as
// scipy.optimize.linear_sum_assignment (shortest augmenting paths, Crouse 2016); solved with
// Jonker-Volgenant initialisation (column reduction, augmenting row reduction) followed by
// Dijkstra shortest augmenting paths over dense rows, potentials in double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace setdet {

struct Assignment {
  std::vector<int64_t> rows;  // ascending
  std::vector<int64_t> cols;  // cols[k] is matched to rows[k]
  // sum of cost[rows[k], cols[k]] over the caller's values (also when maximising)
  double total_cost = 0.0;
};

// cost: [n, m] row-major, finite. Returns min(n, m) pairs with the same optimal total as
// scipy.optimize.linear_sum_assignment, for n <= m and n > m (tall matrices are solved
// transposed, as scipy does); maximize = true maximises the total instead. n = 0 or m = 0 gives
// an empty result (cost may then be null). Where several assignments are optimal the pairs may
// differ from scipy's, except that a constant matrix gives the identity (rows and cols 0..k-1)
// like scipy. float input is read as float; potentials and totals are accumulated in double.
// Throws setdet::Error naming the first non-finite entry in row-major order, e.g.
// "linear_sum_assignment: cost[3, 7] is nan" (scipy instead accepts +inf as a forbidden pair).
template <typename T>
Assignment linear_sum_assignment(const T* cost, size_t n, size_t m, bool maximize = false);

}  // namespace setdet
