#include "setdet/core/match/lsa.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "setdet/core/error.h"

namespace setdet {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The hot loops use GCC/Clang vector extensions, generic over the lane count L: L = 2 (16-byte
// vectors, any x86-64 / ARM64 target) by default; on x86-64 a 4-lane AVX2 build of each kernel is
// chosen at run time. Vectors never cross this file's interface.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#pragma clang diagnostic ignored "-Wunused-function"  // clang misreports multiversioned kernels
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define SETDET_LSA_AVX2 1
#endif
#define SETDET_LSA_INLINE inline __attribute__((always_inline))

template <int L>
struct Lanes;
template <>
struct Lanes<2> {
  typedef double D __attribute__((vector_size(16)));
  typedef float F __attribute__((vector_size(8)));
};
template <>
struct Lanes<4> {
  typedef double D __attribute__((vector_size(32)));
  typedef float F __attribute__((vector_size(16)));
};

template <int L>
SETDET_LSA_INLINE typename Lanes<L>::D load(const double* p) {
  typename Lanes<L>::D x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}
template <int L>
SETDET_LSA_INLINE typename Lanes<L>::D load(const float* p) {
  typename Lanes<L>::F x;
  std::memcpy(&x, p, sizeof(x));
  return __builtin_convertvector(x, typename Lanes<L>::D);
}
template <typename V>
SETDET_LSA_INLINE void store(double* p, const V& x) {
  std::memcpy(p, &x, sizeof(x));
}
// Lane k of vector a holds a * L + k: indices are exact in doubles, so index and value blends
// share one mask type.
template <int L>
SETDET_LSA_INLINE typename Lanes<L>::D iota(int a) {
  typename Lanes<L>::D x;
  for (int k = 0; k < L; ++k) x[k] = a * L + k;
  return x;
}

// Dijkstra relaxation through row i reached at distance h - u[i]:
// dd[j] = min(dd[j], h + c[j] - w[j]) with pred[j] = i where it improves. Returns the smallest
// dd and its first index. Two independent accumulators hide the blend latency.
template <int L, typename T>
SETDET_LSA_INLINE double relax_row_impl(const T* c, const double* w, double* dd, double* pred,
                                        int n, double h, int i, int* argmin) {
  typedef typename Lanes<L>::D V;
  const double di = i;
  const V zero = {};
  const V hv = zero + h, iv = zero + di;
  V m[2] = {zero + kInf, zero + kInf}, mi[2] = {zero, zero}, idx[2] = {iota<L>(0), iota<L>(1)};
  int j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    for (int a = 0; a < 2; ++a) {
      const int q = j + a * L;
      const V t = hv + load<L>(c + q) - load<L>(w + q);
      V d = load<L>(dd + q);
      const auto lt = t < d;
      d = lt ? t : d;
      store(dd + q, d);
      store(pred + q, lt ? iv : load<L>(pred + q));
      const auto lm = d < m[a];
      m[a] = lm ? d : m[a];
      mi[a] = lm ? idx[a] : mi[a];
      idx[a] += 2 * L;
    }
  }
  double best = kInf, b = 0;
  for (int a = 0; a < 2; ++a) {
    for (int k = 0; k < L; ++k) {
      if (m[a][k] < best || (m[a][k] == best && mi[a][k] < b)) {
        best = m[a][k];
        b = mi[a][k];
      }
    }
  }
  for (; j < n; ++j) {
    const double t = h + static_cast<double>(c[j]) - w[j];
    if (t < dd[j]) {
      dd[j] = t;
      pred[j] = di;
    }
    if (dd[j] < best) {
      best = dd[j];
      b = j;
    }
  }
  *argmin = static_cast<int>(b);
  return best;
}

// The two smallest reduced costs c[j] - v[j] (u1 <= u2) and their columns, ties to the lower
// index; n >= 2.
template <int L, typename T>
SETDET_LSA_INLINE void two_smallest_impl(const T* c, const double* v, int n, double* u1, int* j1,
                                         double* u2, int* j2) {
  typedef typename Lanes<L>::D V;
  const V zero = {};
  V m1[2] = {zero + kInf, zero + kInf}, m2[2] = {zero + kInf, zero + kInf};
  V i1[2] = {zero - 1, zero - 1}, i2[2] = {zero - 1, zero - 1};
  V idx[2] = {iota<L>(0), iota<L>(1)};
  int j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    for (int a = 0; a < 2; ++a) {
      const int q = j + a * L;
      const V h = load<L>(c + q) - load<L>(v + q);
      const auto lt1 = h < m1[a];
      const auto lt2 = h < m2[a];
      m2[a] = lt1 ? m1[a] : (lt2 ? h : m2[a]);
      i2[a] = lt1 ? i1[a] : (lt2 ? idx[a] : i2[a]);
      m1[a] = lt1 ? h : m1[a];
      i1[a] = lt1 ? idx[a] : i1[a];
      idx[a] += 2 * L;
    }
  }
  double x1 = kInf, x2 = kInf, k1 = -1, k2 = -1;
  auto offer = [&](double x, double k) {
    if (k < 0) return;
    if (x < x1 || (x == x1 && k < k1)) {
      x2 = x1;
      k2 = k1;
      x1 = x;
      k1 = k;
    } else if (x < x2 || (x == x2 && k < k2)) {
      x2 = x;
      k2 = k;
    }
  };
  for (int a = 0; a < 2; ++a) {
    for (int k = 0; k < L; ++k) {
      offer(m1[a][k], i1[a][k]);
      offer(m2[a][k], i2[a][k]);
    }
  }
  for (; j < n; ++j) offer(static_cast<double>(c[j]) - v[j], j);
  *u1 = x1;
  *j1 = static_cast<int>(k1);
  *u2 = x2;
  *j2 = static_cast<int>(k2);
}

template <typename T>
SETDET_LSA_INLINE void column_min_impl(const T* c, double* v, int n) {
  for (int j = 0; j < n; ++j) {
    const double x = static_cast<double>(c[j]);
    v[j] = x < v[j] ? x : v[j];
  }
}

// False if any entry is inf or NaN (x * 0 is NaN exactly then).
template <typename T>
SETDET_LSA_INLINE bool all_finite_impl(const T* c, size_t count) {
  constexpr size_t kLanes = 16;
  T acc[kLanes] = {};
  size_t k = 0;
  for (; k + kLanes <= count; k += kLanes)
    for (size_t l = 0; l < kLanes; ++l) acc[l] += c[k + l] * T(0);
  for (; k < count; ++k) acc[0] += c[k] * T(0);
  bool ok = true;
  for (size_t l = 0; l < kLanes; ++l) ok = ok && acc[l] == T(0);
  return ok;
}

#define SETDET_LSA_KERNELS(ATTR, L, T)                                                          \
  ATTR double relax_row(const T* c, const double* w, double* dd, double* pred, int n, double h, \
                        int i, int* argmin) {                                                   \
    return relax_row_impl<L>(c, w, dd, pred, n, h, i, argmin);                                  \
  }                                                                                             \
  ATTR void two_smallest(const T* c, const double* v, int n, double* u1, int* j1, double* u2,   \
                         int* j2) {                                                             \
    two_smallest_impl<L>(c, v, n, u1, j1, u2, j2);                                              \
  }                                                                                             \
  ATTR void column_min(const T* c, double* v, int n) { column_min_impl(c, v, n); }              \
  ATTR bool all_finite(const T* c, size_t count) { return all_finite_impl(c, count); }
#ifdef SETDET_LSA_AVX2
// GCC function multiversioning: same signature, one body per target, resolved at load time.
SETDET_LSA_KERNELS(__attribute__((target("default"))), 2, float)
SETDET_LSA_KERNELS(__attribute__((target("default"))), 2, double)
SETDET_LSA_KERNELS(__attribute__((target("avx2"))), 4, float)
SETDET_LSA_KERNELS(__attribute__((target("avx2"))), 4, double)
#else
SETDET_LSA_KERNELS(, 2, float)
SETDET_LSA_KERNELS(, 2, double)
#endif
#undef SETDET_LSA_KERNELS

// Throws naming the first non-finite entry (row-major order) of the [n, m] input, if any.
template <typename T>
void throw_first_non_finite(const T* cost, size_t n, size_t m) {
  for (size_t k = 0; k < n * m; ++k) {
    const T c = cost[k];
    if (!std::isfinite(c)) {
      throw Error(detail::concat("linear_sum_assignment: cost[", k / m, ", ", k % m, "] is ",
                                 std::isnan(c) ? "nan" : (c > 0 ? "inf" : "-inf"),
                                 "; expected a finite cost matrix"));
    }
  }
}

// The [nr, nc] matrix the solver works on, nr <= nc: the caller's [n, m] matrix, its transpose
// when n > m (scipy solves tall matrices transposed too), negated to maximise. Rows are built
// and checked finite kBlock at a time on first use, so each block is still in cache when the
// row reduction reads it.
template <typename T>
class CostRows {
 public:
  CostRows(const T* cost, size_t n, size_t m, bool maximize)
      : cost_(cost),
        n_(n),
        m_(m),
        negate_(maximize),
        transposed_(n > m),
        nr_(static_cast<int>(std::min(n, m))),
        nc_(static_cast<int>(std::max(n, m))) {
    if (transposed_ || negate_) buffer_.reset(new T[n * m]);
    data_ = buffer_ ? buffer_.get() : cost_;
  }

  int rows() const { return nr_; }
  int cols() const { return nc_; }
  bool transposed() const { return transposed_; }
  const T* row(int i) const { return data_ + static_cast<size_t>(i) * static_cast<size_t>(nc_); }
  // Makes rows [0, i] available.
  void prepare(int i) {
    while (ready_ <= i) build_block();
  }

 private:
  static constexpr int kBlock = 16;

  void build_block() {
    const size_t r0 = static_cast<size_t>(ready_);
    const size_t r1 = std::min(static_cast<size_t>(nr_), r0 + kBlock);
    const size_t nc = static_cast<size_t>(nc_);
    const T sign = negate_ ? T(-1) : T(1);
    T* dst = buffer_.get();
    if (transposed_) {
      // working row r = caller's column r: read each caller row's kBlock entries contiguously
      for (size_t i = 0; i < nc; ++i) {
        const T* src = cost_ + i * m_;
        for (size_t r = r0; r < r1; ++r) dst[r * nc + i] = sign * src[r];
      }
    } else if (negate_) {
      for (size_t k = r0 * nc; k < r1 * nc; ++k) dst[k] = -cost_[k];
    }
    if (!all_finite(data_ + r0 * nc, (r1 - r0) * nc)) throw_first_non_finite(cost_, n_, m_);
    ready_ = static_cast<int>(r1);
  }

  const T* cost_;
  size_t n_, m_;
  bool negate_, transposed_;
  int nr_, nc_;
  std::unique_ptr<T[]> buffer_;
  const T* data_;
  int ready_ = 0;
};

// Minimum-cost assignment of every row of a row-major [nr, nc] matrix (nr <= nc) to a distinct
// column. Duals: column potentials v (double) such that every assigned row i has
// c[i, x[i]] - v[x[i]] = min_j (c[i, j] - v[j]) (its implicit u[i]); when nr < nc, v[j] = 0 on
// columns never assigned and v <= 0 elsewhere. Initialisation after Jonker & Volgenant (1987):
// column reduction (square case only) and augmenting row reduction; the rows still free are
// assigned by Dijkstra shortest augmenting paths over dense rows.
template <typename T>
class SapSolver {
 public:
  explicit SapSolver(CostRows<T>& c)
      : c_(c),
        nr_(c.rows()),
        nc_(c.cols()),
        v_(static_cast<size_t>(nc_), 0.0),
        w_(static_cast<size_t>(nc_)),
        dd_(static_cast<size_t>(nc_)),
        dist_(static_cast<size_t>(nc_)),
        pred_(static_cast<size_t>(nc_)),
        x_(static_cast<size_t>(nr_), -1),
        y_(static_cast<size_t>(nc_), -1),
        scanned_(static_cast<size_t>(nc_)) {}

  // Returns the column of each row.
  const std::vector<int>& solve() {
    if (nc_ == 1) {
      c_.prepare(0);
      x_[0] = 0;
      return x_;
    }
    if (nr_ == nc_) {
      c_.prepare(nr_ - 1);
      for (int j = 0; j < nc_; ++j) v_[j] = static_cast<double>(row(0)[j]);
      for (int i = 1; i < nr_; ++i) column_min(row(i), v_.data(), nc_);
    }
    free_rows_.resize(static_cast<size_t>(nr_));
    for (int i = 0; i < nr_; ++i) free_rows_[static_cast<size_t>(i)] = i;
    augmenting_row_reduction();
    c_.prepare(nr_ - 1);
    for (int s : free_rows_) augment(s);
    return x_;
  }

 private:
  const T* row(int i) const { return c_.row(i); }

  // Jonker & Volgenant's augmenting row reduction: a free row takes its best column j1, lowering
  // v[j1] by the gap to its second best, and evicts j1's row. A first pass over all rows (so a
  // constant matrix gives the identity, as in scipy), a second over the evicted ones, bounded.
  void augmenting_row_reduction() {
    const long max_steps = kArrStepsPerRow * static_cast<long>(nr_);
    long steps = 0;
    std::vector<int>& rows = free_rows_;
    for (int pass = 0; pass < 2 && !rows.empty(); ++pass) {
      const size_t count = rows.size();
      size_t next_free = 0;
      size_t k = 0;
      while (k < count) {
        const int i = rows[k++];
        if (++steps > max_steps) {
          rows[next_free++] = i;
          continue;
        }
        c_.prepare(i);  // pass 1 meets rows in ascending order; evicted rows are ready
        const T* r = row(i);
        double u1, u2;
        int j1, j2;
        two_smallest(r, v_.data(), nc_, &u1, &j1, &u2, &j2);
        int i0 = y_[j1];
        if (u1 < u2) {
          v_[j1] -= u2 - u1;
        } else if (i0 >= 0) {
          // Tie: prefer a free column with the same reduced cost, else evict j2's row.
          int j = y_[j2] < 0 ? j2 : -1;
          for (int q = 0; q < nc_ && j < 0; ++q)
            if (y_[q] < 0 && static_cast<double>(r[q]) - v_[q] == u1) j = q;
          j1 = j >= 0 ? j : j2;
          i0 = y_[j1];
        }
        x_[i] = j1;
        y_[j1] = i;
        if (i0 >= 0) {
          x_[i0] = -1;
          if (u1 < u2) {
            rows[--k] = i0;  // examined again at once: its best column just got dearer
          } else {
            rows[next_free++] = i0;
          }
        }
      }
      rows.resize(next_free);
    }
  }

  // Dijkstra from free row s over reduced costs c[i, j] - v[j] - u[i]; stops at the first free
  // column reached, updates v on the scanned columns and flips the path.
  void augment(int s) {
    double* const dd = dd_.data();      // tentative distance, +inf once scanned
    double* const w = w_.data();        // v, or -inf once scanned (relaxation then skips it)
    double* const pred = pred_.data();  // row through which a column was reached (exact double)
    std::memcpy(w, v_.data(), sizeof(double) * static_cast<size_t>(nc_));
    std::fill(dd_.begin(), dd_.end(), kInf);
    int bj;
    double mu = relax_row(row(s), w, dd, pred, nc_, 0.0, s, &bj);
    int n_scanned = 0;
    while (true) {
      SETDET_CHECK(
          mu < kInf,
          "linear_sum_assignment: dual potentials overflowed; the cost range is too large");
      if (y_[bj] < 0) break;
      const int j = bj;
      scanned_[n_scanned] = j;
      dist_[n_scanned++] = mu;
      dd[j] = kInf;
      w[j] = -kInf;
      const int i = y_[j];
      const double h = mu - (static_cast<double>(row(i)[j]) - v_[j]);
      mu = relax_row(row(i), w, dd, pred, nc_, h, i, &bj);
    }
    for (int q = 0; q < n_scanned; ++q) v_[scanned_[q]] += dist_[q] - mu;
    for (int j = bj;;) {
      const int i = static_cast<int>(pred[j]);
      y_[j] = i;
      const int prev = x_[i];
      x_[i] = j;
      if (i == s) break;
      j = prev;
    }
  }

  static constexpr long kArrStepsPerRow = 2;

  CostRows<T>& c_;
  int nr_, nc_;
  std::vector<double> v_, w_, dd_, dist_, pred_;
  std::vector<int> x_, y_, scanned_, free_rows_;
};

}  // namespace

template <typename T>
Assignment linear_sum_assignment(const T* cost, size_t n, size_t m, bool maximize) {
  Assignment out;
  if (n == 0 || m == 0) return out;
  SETDET_CHECK(cost != nullptr, "linear_sum_assignment: cost is null for a [", n, ", ", m,
               "] matrix");
  SETDET_CHECK(n < static_cast<size_t>(std::numeric_limits<int>::max()) &&
                   m < static_cast<size_t>(std::numeric_limits<int>::max()),
               "linear_sum_assignment: cost must have fewer than 2^31 rows and columns, got [", n,
               ", ", m, "]");

  CostRows<T> c(cost, n, m, maximize);
  const bool transposed = c.transposed();
  const size_t nr = static_cast<size_t>(c.rows()), nc = static_cast<size_t>(c.cols());
  SapSolver<T> solver(c);
  const std::vector<int>& col_of_row = solver.solve();

  out.rows.reserve(nr);
  out.cols.reserve(nr);
  if (!transposed) {
    for (size_t i = 0; i < nr; ++i) {
      out.rows.push_back(static_cast<int64_t>(i));
      out.cols.push_back(col_of_row[i]);
    }
  } else {
    std::vector<int> row_of_col(nc, -1);
    for (size_t i = 0; i < nr; ++i)
      row_of_col[static_cast<size_t>(col_of_row[i])] = static_cast<int>(i);
    for (size_t j = 0; j < nc; ++j) {
      if (row_of_col[j] < 0) continue;
      out.rows.push_back(static_cast<int64_t>(j));
      out.cols.push_back(row_of_col[j]);
    }
  }
  for (size_t k = 0; k < out.rows.size(); ++k)
    out.total_cost += static_cast<double>(
        cost[static_cast<size_t>(out.rows[k]) * m + static_cast<size_t>(out.cols[k])]);
  return out;
}

template Assignment linear_sum_assignment<float>(const float*, size_t, size_t, bool);
template Assignment linear_sum_assignment<double>(const double*, size_t, size_t, bool);

}  // namespace setdet
