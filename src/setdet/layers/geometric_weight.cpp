#include "setdet/layers/geometric_weight.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace setdet {
namespace {

constexpr float kMinWeight = 1e-6f;   // the code's max(w_G, 1e-6) before the log
constexpr double kMinOffset = 1e-3;   // the code's max(|dx| / w, 1e-3) before the log
constexpr double kScale = 100.0;      // the embedding's scale and wave length
constexpr double kWaveLength = 1000.0;
constexpr int64_t kKeys = 16;         // keys per block: one AVX-512 or two AVX2 vectors
constexpr int64_t kHeadPad = 8;       // W's rows padded to a multiple of every head tile

// ---- composite path ------------------------------------------------------------------------

// 1 / wave_length^(2 c k / dim) for k < dim / (2 c): the frequencies of sinusoid_embedding, in the
// dtype of `like` (the kernel uses the same float32 values as the composite path).
at::Tensor inverse_frequencies(int64_t coords, int64_t dim, double wave_length,
                               const at::TensorOptions& like) {
  const int64_t freqs = dim / (2 * coords);
  const at::Tensor k = at::arange(freqs, like);
  return at::pow(wave_length,
                 k * (-2.0 * static_cast<double>(coords) / static_cast<double>(dim)));
}

// ---- the fused CPU kernel ------------------------------------------------------------------

// L floats / ints (8: one AVX2 register, 16: one AVX-512 register); `a += b * c` one fused
// multiply-add. The helpers taking or returning them are always inlined, so no call passes one
// (GCC's -Wpsabi note about the AVX calling convention does not apply).
#pragma GCC diagnostic ignored "-Wpsabi"
template <int L>
struct Lanes {
  typedef float F __attribute__((vector_size(4 * L)));
  typedef int32_t I __attribute__((vector_size(4 * L)));
  typedef uint32_t U __attribute__((vector_size(4 * L)));
};

#define SETDET_ALWAYS_INLINE inline __attribute__((always_inline))

template <int L>
SETDET_ALWAYS_INLINE typename Lanes<L>::F load(const float* p) {
  typename Lanes<L>::F v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <int L>
SETDET_ALWAYS_INLINE void store(float* p, typename Lanes<L>::F v) {
  std::memcpy(p, &v, sizeof(v));
}
template <int L>
SETDET_ALWAYS_INLINE typename Lanes<L>::F splat(float x) {
  return typename Lanes<L>::F{} + x;
}
template <int L>
SETDET_ALWAYS_INLINE typename Lanes<L>::F vmax(typename Lanes<L>::F a, typename Lanes<L>::F b) {
  return a > b ? a : b;
}
template <int L>
SETDET_ALWAYS_INLINE typename Lanes<L>::F vabs(typename Lanes<L>::F a) {
  using V = Lanes<L>;
  return (typename V::F)((typename V::I)a & 0x7fffffff);
}

// Natural log of positive normal floats (the geometry's arguments are >= 1e-3, the weights
// >= 1e-6): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(1 + f) by the minimax polynomial of
// Cephes' logf (coefficients from Cephes 2.9, S. L. Moshier), about 1 ulp.
template <int L>
SETDET_ALWAYS_INLINE typename Lanes<L>::F vlog(typename Lanes<L>::F x) {
  using F = typename Lanes<L>::F;
  using I = typename Lanes<L>::I;
  const I bits = (I)x;
  I e = (bits >> 23) - 127;
  F m = (F)((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const I big = m > 1.41421356237f;
  m = big ? m * 0.5f : m;
  e -= big;  // -1 where halved
  const F f = m - 1.0f;
  const F ef = __builtin_convertvector(e, F);
  const F z = f * f;
  F y = 7.0376836292e-2f * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y += ef * -2.12194440e-4f;
  y -= 0.5f * z;
  return f + y + ef * 0.693359375f;
}

// e^x for x in [-87, 88] (clamped): 2^n e^r with |r| <= ln(2) / 2, Cephes' expf polynomial.
template <int L>
SETDET_ALWAYS_INLINE typename Lanes<L>::F vexp(typename Lanes<L>::F x) {
  using F = typename Lanes<L>::F;
  using I = typename Lanes<L>::I;
  x = vmax<L>(x, splat<L>(-87.0f));
  x = x < 88.0f ? x : splat<L>(88.0f);
  const F magic = splat<L>(12582912.0f);  // 1.5 x 2^23: adding it rounds to an integer
  const F n = (x * 1.44269504089f + magic) - magic;
  F r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const F z = r * r;
  F y = 1.9875691500e-4f * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const I scale = (__builtin_convertvector(n, I) + 127) << 23;
  return y * (F)scale;
}

// sin and cos of |x| < 2^22 (the embedding's arguments stay below 1e3): x = r + q pi / 2 with
// |r| <= pi / 4 (pi / 2 in three parts, Cody and Waite), Cephes' sinf / cosf polynomials on r,
// then the quadrant's swap and signs.
template <int L>
SETDET_ALWAYS_INLINE void vsincos(typename Lanes<L>::F x, typename Lanes<L>::F& s,
                                  typename Lanes<L>::F& c) {
  using F = typename Lanes<L>::F;
  using I = typename Lanes<L>::I;
  using U = typename Lanes<L>::U;
  const F magic = splat<L>(12582912.0f);
  const F qf = (x * 0.636619772367581f + magic) - magic;
  const I q = __builtin_convertvector(qf, I);
  F r = x - qf * 1.5703125f;
  r = r - qf * 4.837512969970703125e-4f;
  r = r - qf * 7.54978995489188216e-8f;
  const F z = r * r;
  const F sp = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * r + r;
  const F cp =
      ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z -
      0.5f * z + 1.0f;
  const I odd = (q & 1) != 0;
  const F s0 = odd ? cp : sp;
  const F c0 = odd ? sp : cp;
  const U uq = (U)q;
  s = (F)((U)s0 ^ ((uq & 2u) << 30));        // negative in quadrants 2, 3
  c = (F)((U)c0 ^ (((uq + 1u) & 2u) << 30));  // negative in quadrants 1, 2
}

// The problem in the kernel's layout: `groups` independent sets of n boxes (queries) whose first m
// are keys; the keys' centres and sizes padded to a multiple of kKeys per group, W zero-padded to
// a multiple of kHeadPad rows. A query row r is query r % n of group r / n.
struct Geometry {
  int64_t groups = 0, n = 0, m = 0, m_pad = 0, h = 0, h_pad = 0, freqs = 0, dim = 0;
  std::vector<float> cx, cy, w, hh;      // queries [groups * n]
  std::vector<float> kcx, kcy, kw, khh;  // keys [groups * m_pad]
  std::vector<float> inv;                // freqs inverse frequencies
  std::vector<float> weight, bias;       // [h_pad, dim], [h_pad]

  // offset of out[group][head 0][query][key 0] in the [groups, h, n, m] output
  int64_t row_offset(int64_t r) const { return (r / n) * h * n * m + (r % n) * m; }
};

// E [dim][kKeys] of query row r and its group's keys k0 .. k0 + kKeys - 1.
template <int L>
SETDET_ALWAYS_INLINE void embed_block(const Geometry& g, int64_t r, int64_t k0, float* e) {
  using F = typename Lanes<L>::F;
  const F qcx = splat<L>(g.cx[r]), qcy = splat<L>(g.cy[r]), qw = splat<L>(g.w[r]),
          qh = splat<L>(g.hh[r]);
  const F min_offset = splat<L>(static_cast<float>(kMinOffset));
  const int64_t f = g.freqs;
  for (int64_t part = 0; part < kKeys; part += L) {
    const int64_t k = (r / g.n) * g.m_pad + k0 + part;
    const F coord[4] = {vlog<L>(vmax<L>(vabs<L>(qcx - load<L>(&g.kcx[k])) / qw, min_offset)),
                        vlog<L>(vmax<L>(vabs<L>(qcy - load<L>(&g.kcy[k])) / qh, min_offset)),
                        vlog<L>(qw / load<L>(&g.kw[k])), vlog<L>(qh / load<L>(&g.khh[k]))};
    for (int c = 0; c < 4; ++c) {
      const F a = coord[c] * static_cast<float>(kScale);
      for (int64_t j = 0; j < f; ++j) {
        F s, co;
        vsincos<L>(a * g.inv[j], s, co);
        store<L>(e + (c * 2 * f + j) * kKeys + part, s);
        store<L>(e + (c * 2 * f + f + j) * kKeys + part, co);
      }
    }
  }
}

// Query rows [r0, r1) of out [groups, h, n, m]: log(max(W . E + b, 1e-6)). Register tile: TH heads
// x the block's kKeys / L vectors.
template <int L, int TH>
SETDET_ALWAYS_INLINE void forward_rows(const Geometry& g, float* out, int64_t r0, int64_t r1) {
  using F = typename Lanes<L>::F;
  constexpr int V = kKeys / L;
  std::vector<float> e(g.dim * kKeys);
  const int64_t plane = g.n * g.m;
  for (int64_t q = r0; q < r1; ++q) {
    float* row = out + g.row_offset(q);
    for (int64_t k0 = 0; k0 < g.m; k0 += kKeys) {
      embed_block<L>(g, q, k0, e.data());
      const int64_t valid = std::min(kKeys, g.m - k0);
      for (int64_t h0 = 0; h0 < g.h; h0 += TH) {
        F acc[TH][V];
        for (int i = 0; i < TH; ++i) {
          for (int v = 0; v < V; ++v) acc[i][v] = splat<L>(g.bias[h0 + i]);
        }
        const float* wrow = &g.weight[h0 * g.dim];
        for (int64_t j = 0; j < g.dim; ++j) {
          F ev[V];
          for (int v = 0; v < V; ++v) ev[v] = load<L>(&e[j * kKeys + v * L]);
          for (int i = 0; i < TH; ++i) {
            const F wv = splat<L>(wrow[i * g.dim + j]);
            for (int v = 0; v < V; ++v) acc[i][v] += wv * ev[v];
          }
        }
        for (int i = 0; i < TH && h0 + i < g.h; ++i) {
          float y[kKeys];
          for (int v = 0; v < V; ++v) {
            store<L>(y + v * L, vlog<L>(vmax<L>(acc[i][v], splat<L>(kMinWeight))));
          }
          std::memcpy(row + (h0 + i) * plane + k0, y, valid * sizeof(float));
        }
      }
    }
  }
}

// For query rows [r0, r1): gw [h_pad][dim] += gz x E, gb [h_pad] += sum of gz, with gz = grad /
// w_G = grad exp(-y) where the product was not clamped. Register tile: TH heads x TJ embedding
// dimensions, one vector of L keys at a time; lane sums kept until the end.
template <int L, int TH, int TJ>
SETDET_ALWAYS_INLINE void backward_rows(const Geometry& g, const float* y, const float* grad,
                                        float* gw, float* gb, int64_t r0, int64_t r1) {
  using F = typename Lanes<L>::F;
  // one row's E [dim][m_pad] and gz [h_pad][m_pad]; lane sums [h_pad][dim][L] and [h_pad][L]
  std::vector<float> e(g.dim * g.m_pad), gz(g.h_pad * g.m_pad, 0.0f), block(g.dim * kKeys);
  std::vector<float> lw(g.h_pad * g.dim * L, 0.0f), lb(g.h_pad * L, 0.0f);
  const int64_t plane = g.n * g.m;
  // y = log(z') with z' = max(z, 1e-6): the clamped entries hold log(1e-6) up to the log's
  // rounding, hence the margin (products in (1e-6, 1.001e-6] count as clamped).
  const F clamped = splat<L>(std::log(kMinWeight) + 1e-3f);
  for (int64_t q = r0; q < r1; ++q) {
    for (int64_t k0 = 0; k0 < g.m_pad; k0 += kKeys) {
      embed_block<L>(g, q, k0, block.data());
      for (int64_t j = 0; j < g.dim; ++j) {
        std::memcpy(&e[j * g.m_pad + k0], &block[j * kKeys], kKeys * sizeof(float));
      }
    }
    for (int64_t h = 0; h < g.h; ++h) {
      const float* yr = y + g.row_offset(q) + h * plane;
      const float* gr = grad + g.row_offset(q) + h * plane;
      float* out = &gz[h * g.m_pad];
      int64_t k = 0;
      for (; k + L <= g.m; k += L) {
        const F yv = load<L>(yr + k);
        store<L>(out + k, yv > clamped ? load<L>(gr + k) * vexp<L>(-yv) : F{});
      }
      if (k < g.m) {
        float yt[L] = {}, gt[L] = {};
        std::memcpy(yt, yr + k, (g.m - k) * sizeof(float));
        std::memcpy(gt, gr + k, (g.m - k) * sizeof(float));
        const F yv = load<L>(yt);
        store<L>(out + k, yv > clamped ? load<L>(gt) * vexp<L>(-yv) : F{});  // padding: grad 0
      }
    }
    for (int64_t h0 = 0; h0 < g.h_pad; h0 += TH) {
      for (int i = 0; i < TH; ++i) {
        F acc = load<L>(&lb[(h0 + i) * L]);
        for (int64_t k = 0; k < g.m_pad; k += L) acc += load<L>(&gz[(h0 + i) * g.m_pad + k]);
        store<L>(&lb[(h0 + i) * L], acc);
      }
      for (int64_t j0 = 0; j0 < g.dim; j0 += TJ) {
        F acc[TH][TJ];
        for (int i = 0; i < TH; ++i) {
          for (int jj = 0; jj < TJ; ++jj) acc[i][jj] = load<L>(&lw[((h0 + i) * g.dim + j0 + jj) * L]);
        }
        for (int64_t k = 0; k < g.m_pad; k += L) {
          F ev[TJ];
          for (int jj = 0; jj < TJ; ++jj) ev[jj] = load<L>(&e[(j0 + jj) * g.m_pad + k]);
          for (int i = 0; i < TH; ++i) {
            const F gv = load<L>(&gz[(h0 + i) * g.m_pad + k]);
            for (int jj = 0; jj < TJ; ++jj) acc[i][jj] += gv * ev[jj];
          }
        }
        for (int i = 0; i < TH; ++i) {
          for (int jj = 0; jj < TJ; ++jj) store<L>(&lw[((h0 + i) * g.dim + j0 + jj) * L], acc[i][jj]);
        }
      }
    }
  }
  for (int64_t i = 0; i < g.h_pad * g.dim; ++i) {
    for (int l = 0; l < L; ++l) gw[i] += lw[i * L + l];
  }
  for (int64_t h = 0; h < g.h_pad; ++h) {
    for (int l = 0; l < L; ++l) gb[h] += lb[h * L + l];
  }
}

// One body per instruction set: AVX-512 (16 lanes, 32 registers: bigger tiles), AVX2 + FMA, and
// the x86-64 baseline (SSE2) where those are missing; chosen once per call by the running CPU.
#define SETDET_GEOMETRIC_KERNELS(ATTR, SUFFIX, L, TH, TJ)                                        \
  ATTR void forward_##SUFFIX(const Geometry& g, float* out, int64_t r0, int64_t r1) {           \
    forward_rows<L, TH>(g, out, r0, r1);                                                        \
  }                                                                                             \
  ATTR void backward_##SUFFIX(const Geometry& g, const float* y, const float* grad, float* gw, \
                              float* gb, int64_t r0, int64_t r1) {                              \
    backward_rows<L, 4, TJ>(g, y, grad, gw, gb, r0, r1);                                        \
  }
#if defined(__x86_64__) && defined(__GNUC__)
SETDET_GEOMETRIC_KERNELS(__attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"))), avx512,
                         16, 8, 4)
SETDET_GEOMETRIC_KERNELS(__attribute__((target("avx2,fma"))), avx2, 8, 4, 2)
#define SETDET_GEOMETRIC_HAS_AVX 1
#endif
SETDET_GEOMETRIC_KERNELS(, baseline, 8, 4, 2)
#undef SETDET_GEOMETRIC_KERNELS

// Denormal inputs (a gradient of ~1e-40 from a saturated softmax) take a microcode assist on every
// multiply on x86: as attention sharpens during training they made the weight-gradient kernel
// several times slower. The kernels run with denormals read and written as zero (DAZ + FTZ) and
// restore the thread's setting afterwards; values below 1.2e-38 do not change a gradient.
class DenormalsAreZero {
 public:
#if defined(__x86_64__) || defined(__SSE2__)
  DenormalsAreZero() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
  ~DenormalsAreZero() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFtz = 0x8000, kDaz = 0x0040;
  unsigned saved_;
#endif
};

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };

std::atomic<int> isa_cap{static_cast<int>(Isa::avx512)};

Isa best_isa() {
#ifdef SETDET_GEOMETRIC_HAS_AVX
  static const Isa best = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                  __builtin_cpu_supports("avx512vl")
                              ? Isa::avx512
                          : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                              ? Isa::avx2
                              : Isa::baseline;
  return best;
#else
  return Isa::baseline;
#endif
}

Isa isa() { return static_cast<Isa>(std::min(static_cast<int>(best_isa()), isa_cap.load())); }

const char* isa_name(Isa i) {
  return i == Isa::avx512 ? "avx512" : i == Isa::avx2 ? "avx2" : "baseline";
}

void forward_kernel(const Geometry& g, float* out, int64_t r0, int64_t r1) {
  const DenormalsAreZero daz;
#ifdef SETDET_GEOMETRIC_HAS_AVX
  if (isa() == Isa::avx512) return forward_avx512(g, out, r0, r1);
  if (isa() == Isa::avx2) return forward_avx2(g, out, r0, r1);
#endif
  forward_baseline(g, out, r0, r1);
}

void backward_kernel(const Geometry& g, const float* y, const float* grad, float* gw, float* gb,
                     int64_t r0, int64_t r1) {
  const DenormalsAreZero daz;
#ifdef SETDET_GEOMETRIC_HAS_AVX
  if (isa() == Isa::avx512) return backward_avx512(g, y, grad, gw, gb, r0, r1);
  if (isa() == Isa::avx2) return backward_avx2(g, y, grad, gw, gb, r0, r1);
#endif
  backward_baseline(g, y, grad, gw, gb, r0, r1);
}

// boxes [groups, n, 4] (contiguous float32), the first num_keys of each group the keys.
Geometry make_geometry(const at::Tensor& boxes, int64_t num_keys, const at::Tensor& weight,
                       const at::Tensor& bias) {
  Geometry g;
  g.groups = boxes.size(0);
  g.n = boxes.size(1);
  g.m = num_keys;
  g.m_pad = (num_keys + kKeys - 1) / kKeys * kKeys;
  g.h = weight.size(0);
  g.h_pad = (g.h + kHeadPad - 1) / kHeadPad * kHeadPad;
  g.dim = weight.size(1);
  g.freqs = g.dim / 8;
  const auto cs = centre_size(boxes.reshape({-1, 4}));
  const std::pair<std::vector<float>*, std::vector<float>*> dst[4] = {
      {&g.cx, &g.kcx}, {&g.cy, &g.kcy}, {&g.w, &g.kw}, {&g.hh, &g.khh}};
  for (int c = 0; c < 4; ++c) {
    const at::Tensor t = cs[c].contiguous();
    const float* p = t.data_ptr<float>();
    dst[c].first->assign(p, p + g.groups * g.n);
    // keys per group, padded with finite copies of the group's first box (never stored)
    auto& keys = *dst[c].second;
    keys.assign(g.groups * g.m_pad, 1.0f);
    for (int64_t gi = 0; gi < g.groups && g.n > 0; ++gi) {
      std::copy(p + gi * g.n, p + gi * g.n + g.m, keys.begin() + gi * g.m_pad);
      std::fill(keys.begin() + gi * g.m_pad + g.m, keys.begin() + (gi + 1) * g.m_pad, p[gi * g.n]);
    }
  }
  const at::Tensor inv = inverse_frequencies(4, g.dim, kWaveLength, boxes.options());
  g.inv.assign(inv.data_ptr<float>(), inv.data_ptr<float>() + g.freqs);
  const at::Tensor w = weight.contiguous();
  g.weight.assign(g.h_pad * g.dim, 0.0f);
  std::copy(w.data_ptr<float>(), w.data_ptr<float>() + g.h * g.dim, g.weight.begin());
  g.bias.assign(g.h_pad, 0.0f);
  const at::Tensor b = bias.contiguous();
  std::copy(b.data_ptr<float>(), b.data_ptr<float>() + g.h, g.bias.begin());
  return g;
}

// [begin, end) of part c when n items split into `parts` contiguous parts: fixed by the thread
// count alone, so results do not depend on scheduling.
std::pair<int64_t, int64_t> part(int64_t n, int64_t parts, int64_t c) {
  const int64_t size = (n + parts - 1) / parts;
  return {std::min(n, c * size), std::min(n, (c + 1) * size)};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LogGeometricWeightFunction
    : public torch::autograd::Function<LogGeometricWeightFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& boxes, int64_t num_keys,
                            const at::Tensor& weight, const at::Tensor& bias) {
    const Geometry g = make_geometry(boxes, num_keys, weight, bias);
    at::Tensor y = at::empty({g.groups, g.h, g.n, g.m}, weight.options());
    float* out = y.data_ptr<float>();
    at::parallel_for(0, g.groups * g.n, 4,
                     [&](int64_t r0, int64_t r1) { forward_kernel(g, out, r0, r1); });
    ctx->save_for_backward({boxes, weight, bias, y});
    ctx->saved_data["num_keys"] = num_keys;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Geometry g = make_geometry(saved[0], ctx->saved_data["num_keys"].toInt(), saved[1],
                                     saved[2]);
    const at::Tensor y = saved[3].contiguous();
    const at::Tensor grad = grads[0].contiguous();
    const int64_t rows = g.groups * g.n;
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
    // per part: [h_pad][dim] sums of the weight gradient, then [h_pad] of the bias's
    const int64_t stride = g.h_pad * (g.dim + 1);
    std::vector<float> partial(parts * stride, 0.0f);
    at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const auto [r0, r1] = part(rows, parts, c);
        float* gw = partial.data() + c * stride;
        backward_kernel(g, y.data_ptr<float>(), grad.data_ptr<float>(), gw,
                        gw + g.h_pad * g.dim, r0, r1);
      }
    });
    at::Tensor grad_weight = at::zeros({g.h, g.dim}, saved[1].options());
    at::Tensor grad_bias = at::zeros({g.h}, saved[2].options());
    float* gw = grad_weight.data_ptr<float>();
    float* gb = grad_bias.data_ptr<float>();
    for (int64_t c = 0; c < parts; ++c) {  // fixed order: the same sums for the same thread count
      const float* p = partial.data() + c * stride;
      for (int64_t h = 0; h < g.h; ++h) {
        for (int64_t j = 0; j < g.dim; ++j) gw[h * g.dim + j] += p[h * g.dim + j];
        gb[h] += p[g.h_pad * g.dim + h];
      }
    }
    return {at::Tensor(), at::Tensor(), grad_weight, grad_bias};
  }
};

}  // namespace

std::string geometric_weight_isa() { return isa_name(isa()); }

std::string limit_geometric_weight_isa(const std::string& name) {
  const std::string previous = isa_name(static_cast<Isa>(isa_cap.load()));
  TORCH_CHECK(name == "avx512" || name == "avx2" || name == "baseline",
              "limit_geometric_weight_isa: expected avx512, avx2 or baseline, got '", name, "'");
  isa_cap = static_cast<int>(name == "avx512" ? Isa::avx512 : name == "avx2" ? Isa::avx2 : Isa::baseline);
  return previous;
}

std::array<at::Tensor, 4> centre_size(const at::Tensor& boxes) {
  const at::Tensor w = (boxes.select(1, 2) - boxes.select(1, 0) + 1.0).clamp_min(kMinOffset);
  const at::Tensor h = (boxes.select(1, 3) - boxes.select(1, 1) + 1.0).clamp_min(kMinOffset);
  return {0.5 * (boxes.select(1, 0) + boxes.select(1, 2)),
          0.5 * (boxes.select(1, 1) + boxes.select(1, 3)), w, h};
}

at::Tensor relative_geometry(const at::Tensor& boxes, const at::Tensor& keys) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && keys.dim() == 2 && keys.size(1) == 4,
              "relative_geometry: boxes must be [N, 4] and [M, 4], got ", boxes.sizes(), " and ",
              keys.sizes());
  const auto q = centre_size(boxes);
  const auto k = centre_size(keys);
  const at::Tensor dx = (q[0].unsqueeze(1) - k[0].unsqueeze(0)).abs() / q[2].unsqueeze(1);
  const at::Tensor dy = (q[1].unsqueeze(1) - k[1].unsqueeze(0)).abs() / q[3].unsqueeze(1);
  return at::stack({dx.clamp_min(kMinOffset).log(), dy.clamp_min(kMinOffset).log(),
                    (q[2].unsqueeze(1) / k[2].unsqueeze(0)).log(),
                    (q[3].unsqueeze(1) / k[3].unsqueeze(0)).log()},
                   -1);
}

at::Tensor sinusoid_embedding(const at::Tensor& x, int64_t dim, double scale, double wave_length) {
  TORCH_CHECK(dim > 0 && dim % (2 * x.size(-1)) == 0, "sinusoid_embedding: dim (", dim,
              ") must be a positive multiple of 2 x ", x.size(-1));
  const at::Tensor inv = inverse_frequencies(x.size(-1), dim, wave_length, x.options());
  const at::Tensor arg = (scale * x).unsqueeze(-1) * inv;      // [..., c, freqs]
  const at::Tensor emb = at::cat({arg.sin(), arg.cos()}, -1);  // [..., c, 2 freqs]
  auto shape = x.sizes().vec();
  shape.back() = dim;
  return emb.reshape(shape);
}

at::Tensor geometry_embedding(const at::Tensor& boxes, int64_t num_keys, int64_t dim) {
  return sinusoid_embedding(relative_geometry(boxes, boxes.narrow(0, 0, num_keys)), dim, kScale,
                            kWaveLength);
}

at::Tensor log_geometric_weight_reference(const at::Tensor& embedding, const at::Tensor& weight,
                                          const at::Tensor& bias) {
  return at::relu(at::linear(embedding, weight, bias))
      .clamp_min(kMinWeight)
      .log()
      .permute({2, 0, 1});
}

at::Tensor log_geometric_weight(const at::Tensor& boxes, int64_t num_keys, const at::Tensor& weight,
                                const at::Tensor& bias) {
  TORCH_CHECK((boxes.dim() == 2 || boxes.dim() == 3) && boxes.size(-1) == 4,
              "log_geometric_weight: boxes must be [N, 4] or [G, N, 4], got ", boxes.sizes());
  const int64_t n = boxes.size(-2);
  TORCH_CHECK(num_keys >= 0 && num_keys <= n, "log_geometric_weight: num_keys must be in [0, ", n,
              "], got ", num_keys);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) > 0 && weight.size(1) % 8 == 0,
              "log_geometric_weight: the weight must be [H, d_g] with d_g a positive multiple of "
              "8, got ",
              weight.sizes());
  TORCH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
              "log_geometric_weight: expected a bias [", weight.size(0), "], got ",
              bias.defined() ? bias.sizes() : at::IntArrayRef{});
  const bool kernel = boxes.device().is_cpu() && weight.device().is_cpu() &&
                      boxes.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
                      (!bias.defined() || bias.scalar_type() == at::kFloat) &&
                      !(boxes.requires_grad() && c10::GradMode::is_enabled());
  if (!kernel) {
    const at::Tensor b = boxes.to(weight.scalar_type());
    if (b.dim() == 2) {
      return log_geometric_weight_reference(geometry_embedding(b, num_keys, weight.size(1)),
                                            weight, bias);
    }
    std::vector<at::Tensor> groups;
    for (int64_t g = 0; g < b.size(0); ++g) {
      groups.push_back(log_geometric_weight_reference(
          geometry_embedding(b[g], num_keys, weight.size(1)), weight, bias));
    }
    return at::stack(groups);
  }
  // autograd functions take defined tensors only: no bias is a zero bias without gradient
  const at::Tensor y = LogGeometricWeightFunction::apply(
      boxes.dim() == 2 ? boxes.detach().unsqueeze(0).contiguous() : boxes.detach().contiguous(),
      num_keys, weight,
      bias.defined() ? bias : at::zeros({weight.size(0)}, weight.options()));
  return boxes.dim() == 2 ? y.squeeze(0) : y;
}

}  // namespace setdet
