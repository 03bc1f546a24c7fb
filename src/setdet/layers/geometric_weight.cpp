#include "setdet/layers/geometric_weight.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace setdet {
namespace {

constexpr float kMinWeight = 1e-6f;  // the code's max(w_G, 1e-6) before the log

// Eight floats; on an AVX2 + FMA target one register, `a += b * c` one fused multiply-add. The
// helpers taking or returning them are always inlined, so no call passes one (GCC's -Wpsabi note
// about the AVX calling convention does not apply).
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8f __attribute__((vector_size(32)));

#define SETDET_ALWAYS_INLINE inline __attribute__((always_inline))

SETDET_ALWAYS_INLINE v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// out[h * P + p] = max(b[h] + sum_k wt[k * H + h] * e[p * D + k], 1e-6) for p in [p0, p1);
// H = 8 HV. relu is inside the max: max(relu(z), 1e-6) = max(z, 1e-6).
template <int HV>
SETDET_ALWAYS_INLINE void forward_vec(const float* e, const float* wt, const float* b, float* out,
                                      int64_t P, int64_t D, int64_t p0, int64_t p1) {
  constexpr int H = 8 * HV;
  v8f bias[HV];
  for (int v = 0; v < HV; ++v) bias[v] = load8(b + 8 * v);
  for (int64_t p = p0; p < p1; ++p) {
    v8f acc[HV];
    for (int v = 0; v < HV; ++v) acc[v] = bias[v];
    const float* ep = e + p * D;
    for (int64_t k = 0; k < D; ++k) {
      const v8f ek = v8f{} + ep[k];
      const float* w = wt + k * H;
      for (int v = 0; v < HV; ++v) acc[v] += ek * load8(w + 8 * v);
    }
    for (int v = 0; v < HV; ++v) {
      for (int l = 0; l < 8; ++l) out[(8 * v + l) * P + p] = std::max(acc[v][l], kMinWeight);
    }
  }
}

// gwt[k * H + h] += sum_p e[p * D + k] * g[p * H + h] for p in [p0, p1); H = 8 HV, D % 8 == 0.
// Pairs in blocks that stay in cache while 8 / HV rows of gwt accumulate in registers.
template <int HV>
SETDET_ALWAYS_INLINE void backward_vec(const float* e, const float* g, float* gwt, int64_t D,
                                       int64_t p0, int64_t p1) {
  constexpr int H = 8 * HV;
  constexpr int KB = 8 / HV;
  constexpr int64_t kPairBlock = 512;
  for (int64_t q0 = p0; q0 < p1; q0 += kPairBlock) {
    const int64_t q1 = std::min(p1, q0 + kPairBlock);
    for (int64_t k0 = 0; k0 < D; k0 += KB) {
      v8f acc[KB][HV] = {};
      for (int64_t p = q0; p < q1; ++p) {
        v8f gv[HV];
        for (int v = 0; v < HV; ++v) gv[v] = load8(g + p * H + 8 * v);
        const float* ep = e + p * D + k0;
        for (int kk = 0; kk < KB; ++kk) {
          const v8f ek = v8f{} + ep[kk];
          for (int v = 0; v < HV; ++v) acc[kk][v] += ek * gv[v];
        }
      }
      for (int kk = 0; kk < KB; ++kk) {
        for (int v = 0; v < HV; ++v) {
          for (int l = 0; l < 8; ++l) gwt[(k0 + kk) * H + 8 * v + l] += acc[kk][v][l];
        }
      }
    }
  }
}

void forward_scalar(const float* e, const float* wt, const float* b, float* out, int64_t P,
                    int64_t D, int64_t H, int64_t p0, int64_t p1) {
  std::vector<float> acc(H);
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t h = 0; h < H; ++h) acc[h] = b[h];
    for (int64_t k = 0; k < D; ++k) {
      for (int64_t h = 0; h < H; ++h) acc[h] += wt[k * H + h] * e[p * D + k];
    }
    for (int64_t h = 0; h < H; ++h) out[h * P + p] = std::max(acc[h], kMinWeight);
  }
}

void backward_scalar(const float* e, const float* g, float* gwt, int64_t D, int64_t H, int64_t p0,
                     int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t k = 0; k < D; ++k) {
      for (int64_t h = 0; h < H; ++h) gwt[k * H + h] += e[p * D + k] * g[p * H + h];
    }
  }
}

// One body per instruction set: the vector code compiled for AVX2 + FMA, and for the x86-64
// baseline (SSE2) where those are missing; chosen once per call by the running CPU.
#define SETDET_GEOMETRIC_KERNELS(ATTR, SUFFIX)                                                   \
  ATTR void forward_##SUFFIX(const float* e, const float* wt, const float* b, float* out,        \
                             int64_t P, int64_t D, int64_t H, int64_t p0, int64_t p1) {         \
    switch (H) {                                                                                \
      case 8:                                                                                   \
        return forward_vec<1>(e, wt, b, out, P, D, p0, p1);                                     \
      case 16:                                                                                  \
        return forward_vec<2>(e, wt, b, out, P, D, p0, p1);                                     \
      case 32:                                                                                  \
        return forward_vec<4>(e, wt, b, out, P, D, p0, p1);                                     \
      default:                                                                                  \
        return forward_scalar(e, wt, b, out, P, D, H, p0, p1);                                  \
    }                                                                                           \
  }                                                                                             \
  ATTR void backward_##SUFFIX(const float* e, const float* g, float* gwt, int64_t D, int64_t H, \
                              int64_t p0, int64_t p1) {                                         \
    if (D % 8 != 0) return backward_scalar(e, g, gwt, D, H, p0, p1);                            \
    switch (H) {                                                                                \
      case 8:                                                                                   \
        return backward_vec<1>(e, g, gwt, D, p0, p1);                                           \
      case 16:                                                                                  \
        return backward_vec<2>(e, g, gwt, D, p0, p1);                                           \
      case 32:                                                                                  \
        return backward_vec<4>(e, g, gwt, D, p0, p1);                                           \
      default:                                                                                  \
        return backward_scalar(e, g, gwt, D, H, p0, p1);                                        \
    }                                                                                           \
  }
#if defined(__x86_64__) && defined(__GNUC__)
SETDET_GEOMETRIC_KERNELS(__attribute__((target("avx2,fma"))), avx2)
#define SETDET_GEOMETRIC_HAS_AVX2 1
#endif
SETDET_GEOMETRIC_KERNELS(, baseline)
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

bool use_avx2() {
#ifdef SETDET_GEOMETRIC_HAS_AVX2
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

// The kernels for the running CPU (AVX2 + FMA where it has them, else the baseline), with
// denormals as zero for their duration.
void forward_kernel(const float* e, const float* wt, const float* b, float* out, int64_t P,
                    int64_t D, int64_t H, int64_t p0, int64_t p1) {
  const DenormalsAreZero daz;
#ifdef SETDET_GEOMETRIC_HAS_AVX2
  if (use_avx2()) return forward_avx2(e, wt, b, out, P, D, H, p0, p1);
#endif
  forward_baseline(e, wt, b, out, P, D, H, p0, p1);
}

void backward_kernel(const float* e, const float* g, float* gwt, int64_t D, int64_t H, int64_t p0,
                     int64_t p1) {
  const DenormalsAreZero daz;
#ifdef SETDET_GEOMETRIC_HAS_AVX2
  if (use_avx2()) return backward_avx2(e, g, gwt, D, H, p0, p1);
#endif
  backward_baseline(e, g, gwt, D, H, p0, p1);
}

// [begin, end) of part c when n items split into `parts` contiguous parts: fixed by the thread
// count alone, so results do not depend on scheduling.
std::pair<int64_t, int64_t> part(int64_t n, int64_t parts, int64_t c) {
  const int64_t size = (n + parts - 1) / parts;
  return {std::min(n, c * size), std::min(n, (c + 1) * size)};
}

at::Tensor forward_cpu(const at::Tensor& emb, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t n = emb.size(0), m = emb.size(1), d = emb.size(2), h = weight.size(0);
  const int64_t pairs = n * m;
  const at::Tensor e = emb.contiguous();
  const at::Tensor wt = weight.t().contiguous();  // [d, h]
  const at::Tensor b = bias.contiguous();
  at::Tensor out = at::empty({h, n, m}, emb.options());
  const float* ep = e.data_ptr<float>();
  const float* wp = wt.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, pairs, 256, [&](int64_t p0, int64_t p1) {
    forward_kernel(ep, wp, bp, op, pairs, d, h, p0, p1);
  });
  return out.log_();
}

// dW [h, d] from gz [h, n, m] (the gradient of the pre-clamp products) and the embedding.
at::Tensor weight_grad_cpu(const at::Tensor& emb, const at::Tensor& gz) {
  const int64_t n = emb.size(0), m = emb.size(1), d = emb.size(2), h = gz.size(0);
  const int64_t pairs = n * m;
  const at::Tensor e = emb.contiguous();
  const at::Tensor g = gz.reshape({h, pairs}).t().contiguous();  // [pairs, h]
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), pairs));
  at::Tensor partial = at::zeros({parts, d, h}, gz.options());
  const float* ep = e.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const auto [p0, p1] = part(pairs, parts, c);
      backward_kernel(ep, gp, pp + c * d * h, d, h, p0, p1);
    }
  });
  return partial.sum(0).t().contiguous();  // [h, d]
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LogGeometricWeightFunction
    : public torch::autograd::Function<LogGeometricWeightFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& emb, const at::Tensor& weight,
                            const at::Tensor& bias) {
    at::Tensor y = forward_cpu(emb, weight, bias);
    ctx->save_for_backward({emb, y});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& emb = saved[0];
    const at::Tensor& y = saved[1];
    // y = log(z') with z' = max(z, 1e-6): dy/dz = 1 / z' = exp(-y) where z > 1e-6, else 0. The
    // clamped entries hold log(1e-6) up to the rounding of the vectorised log, hence the margin
    // (products in (1e-6, 1.001e-6] count as clamped).
    const at::Tensor gz = at::where(y > std::log(kMinWeight) + 1e-3, grads[0] * at::exp(-y),
                                    at::zeros({}, y.options()));
    at::Tensor grad_bias;
    if (ctx->needs_input_grad(2)) grad_bias = gz.sum({1, 2});
    return {at::Tensor(), weight_grad_cpu(emb, gz), grad_bias};
  }
};

}  // namespace

at::Tensor log_geometric_weight_reference(const at::Tensor& embedding, const at::Tensor& weight,
                                          const at::Tensor& bias) {
  return at::relu(at::linear(embedding, weight, bias))
      .clamp_min(kMinWeight)
      .log()
      .permute({2, 0, 1});
}

at::Tensor log_geometric_weight(const at::Tensor& embedding, const at::Tensor& weight,
                                const at::Tensor& bias) {
  TORCH_CHECK(embedding.dim() == 3 && weight.dim() == 2 && weight.size(1) == embedding.size(2),
              "log_geometric_weight: expected an embedding [N, M, d] and a weight [H, d], got ",
              embedding.sizes(), " and ", weight.sizes());
  TORCH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
              "log_geometric_weight: expected a bias [", weight.size(0), "], got ", bias.sizes());
  const bool kernel = embedding.device().is_cpu() && weight.device().is_cpu() &&
                      embedding.scalar_type() == at::kFloat &&
                      weight.scalar_type() == at::kFloat &&
                      (!bias.defined() || bias.scalar_type() == at::kFloat) &&
                      !(embedding.requires_grad() && c10::GradMode::is_enabled()) &&
                      embedding.numel() > 0;
  if (!kernel) return log_geometric_weight_reference(embedding, weight, bias);
  // autograd functions take defined tensors only: no bias is a zero bias without gradient
  return LogGeometricWeightFunction::apply(
      embedding, weight, bias.defined() ? bias : at::zeros({weight.size(0)}, weight.options()));
}

}  // namespace setdet
