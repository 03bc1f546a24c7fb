#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/core/match/lsa.h"

namespace setdet {
namespace {

using Matrix = std::vector<double>;  // row-major [n, m]

// Checks the shape of a result: min(n, m) pairs, rows strictly ascending, distinct in-range
// columns, total_cost equal to the sum of the chosen entries.
template <typename T>
void expect_valid(const Assignment& a, const std::vector<T>& cost, size_t n, size_t m) {
  const size_t k = std::min(n, m);
  ASSERT_EQ(a.rows.size(), k);
  ASSERT_EQ(a.cols.size(), k);
  std::vector<bool> used(m, false);
  double total = 0.0;
  for (size_t q = 0; q < k; ++q) {
    ASSERT_GE(a.rows[q], 0);
    ASSERT_LT(a.rows[q], static_cast<int64_t>(n));
    ASSERT_GE(a.cols[q], 0);
    ASSERT_LT(a.cols[q], static_cast<int64_t>(m));
    if (q > 0) {
      EXPECT_LT(a.rows[q - 1], a.rows[q]);
    }
    EXPECT_FALSE(used[static_cast<size_t>(a.cols[q])]) << "column " << a.cols[q] << " used twice";
    used[static_cast<size_t>(a.cols[q])] = true;
    total += static_cast<double>(
        cost[static_cast<size_t>(a.rows[q]) * m + static_cast<size_t>(a.cols[q])]);
  }
  EXPECT_DOUBLE_EQ(a.total_cost, total);
}

// Best total over every injective map of the smaller side into the larger one (n, m <= 8).
double brute_force_best(const Matrix& cost, size_t n, size_t m, bool maximize) {
  const bool flip = n > m;
  const size_t small = flip ? m : n, large = flip ? n : m;
  auto at = [&](size_t s, size_t l) { return flip ? cost[l * m + s] : cost[s * m + l]; };
  std::vector<size_t> perm(large);
  std::iota(perm.begin(), perm.end(), size_t{0});
  double best =
      maximize ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  do {
    double total = 0.0;
    for (size_t s = 0; s < small; ++s) total += at(s, perm[s]);
    best = maximize ? std::max(best, total) : std::min(best, total);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

// Textbook O(n^2 m) Hungarian method with potentials (rows <= columns), independent of the
// implementation under test; minimisation only.
double hungarian_reference(const Matrix& cost, size_t n, size_t m) {
  const bool flip = n > m;
  const size_t rows = flip ? m : n, cols = flip ? n : m;
  auto at = [&](size_t i, size_t j) { return flip ? cost[j * m + i] : cost[i * m + j]; };
  const double inf = std::numeric_limits<double>::infinity();
  // 1-based; column 0 is a virtual start column.
  std::vector<double> u(rows + 1, 0.0), v(cols + 1, 0.0);
  std::vector<size_t> match(cols + 1, 0), way(cols + 1, 0);
  for (size_t i = 1; i <= rows; ++i) {
    match[0] = i;
    size_t j0 = 0;
    std::vector<double> minv(cols + 1, inf);
    std::vector<bool> used(cols + 1, false);
    do {
      used[j0] = true;
      const size_t i0 = match[j0];
      double delta = inf;
      size_t j1 = 0;
      for (size_t j = 1; j <= cols; ++j) {
        if (used[j]) continue;
        const double cur = at(i0 - 1, j - 1) - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (size_t j = 0; j <= cols; ++j) {
        if (used[j]) {
          u[match[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (match[j0] != 0);
    do {
      const size_t j1 = way[j0];
      match[j0] = match[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  double total = 0.0;
  for (size_t j = 1; j <= cols; ++j)
    if (match[j] != 0) total += at(match[j] - 1, j - 1);
  return total;
}

Matrix random_matrix(std::mt19937_64& rng, size_t n, size_t m, int kind) {
  Matrix c(n * m);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::uniform_int_distribution<int> small_int(0, 3);
  std::normal_distribution<double> normal(0.0, 1000.0);
  for (double& x : c) {
    switch (kind) {
      case 0:
        x = uniform(rng);
        break;
      case 1:
        x = small_int(rng);
        break;  // many ties
      default:
        x = normal(rng);
        break;  // negative costs too
    }
  }
  return c;
}

void expect_assignment(const Assignment& a, const std::vector<int64_t>& rows,
                       const std::vector<int64_t>& cols, double total) {
  EXPECT_EQ(a.rows, rows);
  EXPECT_EQ(a.cols, cols);
  EXPECT_DOUBLE_EQ(a.total_cost, total);
}

// Totals of the 6 permutations (column of rows 0, 1, 2): 012: 6, 021: 11, 102: 5, 120: 9,
// 201: 7, 210: 6; unique minimum 102, unique maximum 021.
const Matrix kClassic3 = {4, 1, 3, 2, 0, 5, 3, 2, 2};

TEST(LinearSumAssignment, Classic3x3) {
  const Assignment a = linear_sum_assignment(kClassic3.data(), 3, 3);
  expect_valid(a, kClassic3, 3, 3);
  expect_assignment(a, {0, 1, 2}, {1, 0, 2}, 5.0);
}

TEST(LinearSumAssignment, Classic3x3Float) {
  const std::vector<float> c(kClassic3.begin(), kClassic3.end());
  const Assignment a = linear_sum_assignment(c.data(), 3, 3);
  expect_valid(a, c, 3, 3);
  expect_assignment(a, {0, 1, 2}, {1, 0, 2}, 5.0);
}

TEST(LinearSumAssignment, Maximize) {
  const Assignment a = linear_sum_assignment(kClassic3.data(), 3, 3, /*maximize=*/true);
  expect_valid(a, kClassic3, 3, 3);
  expect_assignment(a, {0, 1, 2}, {0, 2, 1}, 11.0);
}

TEST(LinearSumAssignment, WideMatrix) {
  // Both rows prefer column 0; 0->1, 1->0 costs 2 + 1 = 3, every other choice costs >= 6.
  const Matrix c = {1, 2, 9, 9, 1, 5, 9, 9};
  const Assignment a = linear_sum_assignment(c.data(), 2, 4);
  expect_valid(a, c, 2, 4);
  expect_assignment(a, {0, 1}, {1, 0}, 3.0);
}

TEST(LinearSumAssignment, TallMatrix) {
  // Rows 1 and 2 crossed (2 + 1 = 3) beat rows 1 and 2 straight (1 + 5) and anything with 8 or 9.
  const Matrix c = {9, 9, 1, 2, 1, 5, 8, 8};
  const Assignment a = linear_sum_assignment(c.data(), 4, 2);
  expect_valid(a, c, 4, 2);
  expect_assignment(a, {1, 2}, {1, 0}, 3.0);
}

TEST(LinearSumAssignment, TallMatrixMaximize) {
  // Largest: rows 0 and 3 (9 + 8 = 17 either way); ties broken by optimum value only.
  const Matrix c = {9, 9, 1, 2, 1, 5, 8, 8};
  const Assignment a = linear_sum_assignment(c.data(), 4, 2, /*maximize=*/true);
  expect_valid(a, c, 4, 2);
  EXPECT_EQ(a.rows, (std::vector<int64_t>{0, 3}));
  EXPECT_DOUBLE_EQ(a.total_cost, 17.0);
}

TEST(LinearSumAssignment, ConstantMatrixGivesIdentity) {
  // scipy.optimize.linear_sum_assignment (scipy 1.10.1) returns the identity for these shapes.
  for (auto [n, m] : {std::pair<size_t, size_t>{5, 5}, {3, 5}, {5, 3}, {1, 4}, {4, 1}}) {
    const Matrix c(n * m, 2.5);
    const Assignment a = linear_sum_assignment(c.data(), n, m);
    expect_valid(a, c, n, m);
    std::vector<int64_t> iota(std::min(n, m));
    std::iota(iota.begin(), iota.end(), int64_t{0});
    EXPECT_EQ(a.rows, iota) << n << "x" << m;
    EXPECT_EQ(a.cols, iota) << n << "x" << m;
  }
  const std::vector<float> cf(64, -1.0f);
  const Assignment a = linear_sum_assignment(cf.data(), 8, 8, /*maximize=*/true);
  for (int64_t k = 0; k < 8; ++k) EXPECT_EQ(a.cols[static_cast<size_t>(k)], k);
}

TEST(LinearSumAssignment, SingleElementRowAndColumn) {
  const Matrix one = {7};
  expect_assignment(linear_sum_assignment(one.data(), 1, 1), {0}, {0}, 7.0);
  const Matrix row = {3, 1, 2};
  expect_assignment(linear_sum_assignment(row.data(), 1, 3), {0}, {1}, 1.0);
  expect_assignment(linear_sum_assignment(row.data(), 1, 3, true), {0}, {0}, 3.0);
  const Matrix col = {3, 1, 2};
  expect_assignment(linear_sum_assignment(col.data(), 3, 1), {1}, {0}, 1.0);
  expect_assignment(linear_sum_assignment(col.data(), 3, 1, true), {0}, {0}, 3.0);
}

TEST(LinearSumAssignment, EmptyGivesEmpty) {
  const Matrix c = {1, 2, 3};
  for (auto [n, m] : {std::pair<size_t, size_t>{0, 3}, {3, 0}, {0, 0}}) {
    const Assignment a = linear_sum_assignment(c.data(), n, m);
    EXPECT_TRUE(a.rows.empty());
    EXPECT_TRUE(a.cols.empty());
    EXPECT_EQ(a.total_cost, 0.0);
  }
  const Assignment a = linear_sum_assignment(static_cast<const float*>(nullptr), 0, 5);
  EXPECT_TRUE(a.rows.empty());
}

TEST(LinearSumAssignment, NegativeCosts) {
  // -1 + -2 = -3 straight, -5 + -3 = -8 crossed.
  const Matrix c = {-1, -5, -3, -2};
  expect_assignment(linear_sum_assignment(c.data(), 2, 2), {0, 1}, {1, 0}, -8.0);
}

TEST(LinearSumAssignment, LargeDynamicRange) {
  // Permutation totals: 012: 3e12, 021: 1e12 + 3e9, 102: 1e12 + 2, 120: 2e9 + 1 + 1e-6,
  // 201: 1e9 + 1 + 1e-6 (the minimum), 210: 1e12 + 2e-6.
  const Matrix c = {1e12, 1, 1e-6, 1, 1e12, 2e9, 1e-6, 1e9, 1e12};
  const Assignment a = linear_sum_assignment(c.data(), 3, 3);
  expect_valid(a, c, 3, 3);
  expect_assignment(a, {0, 1, 2}, {2, 0, 1}, 1e-6 + 1.0 + 1e9);
}

TEST(LinearSumAssignment, MatchesBruteForceOnSmallMatrices) {
  std::mt19937_64 rng(20261122);
  int checked = 0;
  for (int seed = 0; seed < 600; ++seed) {
    const size_t n = 1 + rng() % 7, m = 1 + rng() % 7;
    const int kind = seed % 3;
    const Matrix c = random_matrix(rng, n, m, kind);
    for (bool maximize : {false, true}) {
      const Assignment a = linear_sum_assignment(c.data(), n, m, maximize);
      expect_valid(a, c, n, m);
      const double best = brute_force_best(c, n, m, maximize);
      EXPECT_NEAR(a.total_cost, best, 1e-9 * (1.0 + std::abs(best)))
          << "seed " << seed << " " << n << "x" << m << " kind " << kind << " maximize "
          << maximize;
      ++checked;
    }
    // float input: same optimum as the double solver on the same (float-representable) values
    const std::vector<float> cf(c.begin(), c.end());
    const Matrix cd(cf.begin(), cf.end());
    const Assignment af = linear_sum_assignment(cf.data(), n, m);
    expect_valid(af, cf, n, m);
    EXPECT_NEAR(af.total_cost, brute_force_best(cd, n, m, false),
                1e-6 * (1.0 + std::abs(af.total_cost)));
  }
  EXPECT_EQ(checked, 1200);
}

TEST(LinearSumAssignment, MatchesHungarianReferenceOnLargerMatrices) {
  std::mt19937_64 rng(7);
  const std::pair<size_t, size_t> shapes[] = {{40, 40},   {30, 70}, {70, 30}, {64, 65},
                                              {100, 100}, {3, 90},  {90, 3}};
  for (const auto& [n, m] : shapes) {
    for (int kind = 0; kind < 3; ++kind) {
      for (int rep = 0; rep < 3; ++rep) {
        const Matrix c = random_matrix(rng, n, m, kind);
        const Assignment a = linear_sum_assignment(c.data(), n, m);
        expect_valid(a, c, n, m);
        const double best = hungarian_reference(c, n, m);
        EXPECT_NEAR(a.total_cost, best, 1e-9 * (1.0 + std::abs(best)))
            << n << "x" << m << " kind " << kind;
        // maximize(c) == -minimize(-c)
        Matrix neg(c.size());
        std::transform(c.begin(), c.end(), neg.begin(), [](double x) { return -x; });
        const Assignment am = linear_sum_assignment(c.data(), n, m, /*maximize=*/true);
        expect_valid(am, c, n, m);
        const double worst = -hungarian_reference(neg, n, m);
        EXPECT_NEAR(am.total_cost, worst, 1e-9 * (1.0 + std::abs(worst)));
      }
    }
  }
}

std::string error_of(const Matrix& c, size_t n, size_t m, bool maximize = false) {
  try {
    linear_sum_assignment(c.data(), n, m, maximize);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(LinearSumAssignment, RejectsNonFiniteEntries) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  Matrix c(4 * 9, 1.0);
  c[3 * 9 + 7] = nan;
  EXPECT_NE(error_of(c, 4, 9).find("linear_sum_assignment: cost[3, 7] is nan"), std::string::npos)
      << error_of(c, 4, 9);
  // n > m (solved transposed) and maximize still name the entry of the caller's matrix: flat
  // index 34 is [8, 2] of a [9, 4] matrix
  EXPECT_NE(error_of(c, 9, 4).find("cost[8, 2] is nan"), std::string::npos) << error_of(c, 9, 4);
  EXPECT_NE(error_of(c, 4, 9, true).find("cost[3, 7] is nan"), std::string::npos);
  c[3 * 9 + 7] = 1.0;
  c[2 * 9 + 1] = inf;
  EXPECT_NE(error_of(c, 4, 9).find("cost[2, 1] is inf"), std::string::npos) << error_of(c, 4, 9);
  c[2 * 9 + 1] = -inf;
  c[0] = -inf;  // the first non-finite entry in row-major order is reported
  EXPECT_NE(error_of(c, 4, 9).find("cost[0, 0] is -inf"), std::string::npos) << error_of(c, 4, 9);

  std::vector<float> cf(6, 0.5f);
  cf[5] = std::numeric_limits<float>::quiet_NaN();
  try {
    linear_sum_assignment(cf.data(), 2, 3);
    ADD_FAILURE() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cost[1, 2] is nan"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace setdet
