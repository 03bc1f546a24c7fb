// The data pipeline's random numbers: xoshiro256** (Blackman & Vigna, 2018) seeded through
// splitmix64, with the distributions written out here so that a seed gives the same numbers on
// every platform and standard library. One generator per (seed, stream...) key: per synthetic
// image, per sample and epoch, per epoch's shuffle.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace setdet {

class Rng {
 public:
  // Mixes every key into the state, so Rng({seed, epoch, index}) streams are independent.
  explicit Rng(std::initializer_list<uint64_t> keys) {
    uint64_t h = 0x6a09e667f3bcc908ULL;
    for (uint64_t k : keys) h = mix64(h ^ mix64(k + 0x9e3779b97f4a7c15ULL));
    for (auto& s : s_) {
      h += 0x9e3779b97f4a7c15ULL;
      s = mix64(h);
    }
  }

  // 64 random bits.
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1), 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi] (inclusive), unbiased (Lemire's multiply-and-reject).
  int64_t randint(int64_t lo, int64_t hi) {
    const uint64_t range = static_cast<uint64_t>(hi - lo) + 1;
    if (range == 0) return static_cast<int64_t>(next());  // the full 64-bit range
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * range;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < range) {
      const uint64_t threshold = -range % range;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * range;
        low = static_cast<uint64_t>(m);
      }
    }
    return lo + static_cast<int64_t>(m >> 64);
  }
  bool bernoulli(double p) { return uniform() < p; }
  // Log-uniform in [lo, hi): small values as likely per octave as large ones.
  double log_uniform(double lo, double hi) { return std::exp(uniform(std::log(lo), std::log(hi))); }
  // Standard normal by the Box-Muller transform (one of the pair is discarded).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  // splitmix64's output function.
  static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  uint64_t s_[4];
};

// Fisher-Yates shuffle driven by Rng (std::shuffle's result depends on the standard library).
template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) {
    std::swap(v[i], v[rng.randint(0, i)]);
  }
}

}  // namespace setdet
