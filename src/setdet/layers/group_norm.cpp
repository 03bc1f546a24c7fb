#include "setdet/layers/group_norm.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace setdet {
namespace {

// Built for AVX2+FMA and baseline x86-64; the loader picks one by CPU (GCC function clones).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SETDET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SETDET_CLONES
#endif

// sum[c] += x[p, c], sq[c] += x[p, c]^2 over rows p of a [rows, C] block.
SETDET_CLONES void accumulate_rows(const float* x, int64_t rows, int64_t c, double* sum,
                                   double* sq) {
  for (int64_t p = 0; p < rows; ++p) {
    const float* row = x + p * c;
    for (int64_t k = 0; k < c; ++k) {
      const double v = row[k];
      sum[k] += v;
      sq[k] += v * v;
    }
  }
}

// y[p, c] = (x[p, c] - m[c]) * a[c] + b[c] (then max(., 0)) over rows p of a [rows, C] block.
// Subtracting the mean first keeps tiny-variance groups (large a) exact where x * a - m * a
// would cancel.
SETDET_CLONES void affine_rows(const float* x, float* y, int64_t rows, int64_t c, const float* m,
                               const float* a, const float* b, bool relu) {
  for (int64_t p = 0; p < rows; ++p) {
    const float* in = x + p * c;
    float* out = y + p * c;
    if (relu) {
      for (int64_t k = 0; k < c; ++k) out[k] = std::max((in[k] - m[k]) * a[k] + b[k], 0.0f);
    } else {
      for (int64_t k = 0; k < c; ++k) out[k] = (in[k] - m[k]) * a[k] + b[k];
    }
  }
}

// Sum and sum of squares of n contiguous floats.
SETDET_CLONES void moments(const float* x, int64_t n, double* sum, double* sq) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const double v0 = x[i], v1 = x[i + 1], v2 = x[i + 2], v3 = x[i + 3];
    s0 += v0;
    s1 += v1;
    s2 += v2;
    s3 += v3;
    q0 += v0 * v0;
    q1 += v1 * v1;
    q2 += v2 * v2;
    q3 += v3 * v3;
  }
  for (; i < n; ++i) {
    const double v = x[i];
    s0 += v;
    q0 += v * v;
  }
  *sum = (s0 + s1) + (s2 + s3);
  *sq = (q0 + q1) + (q2 + q3);
}

SETDET_CLONES void affine_span(const float* x, float* y, int64_t n, float m, float a, float b,
                               bool relu) {
  if (relu) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::max((x[i] - m) * a + b, 0.0f);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * a + b;
  }
}

// Per-channel m, a, b of y = (x - m) * a + b for one image, from group sums over `count` values.
void channel_affine(const double* gsum, const double* gsq, int64_t groups, int64_t c, double count,
                    double eps, const float* w, const float* bias, float* m, float* a, float* b) {
  const int64_t cg = c / groups;
  for (int64_t g = 0; g < groups; ++g) {
    const double mean = gsum[g] / count;
    const double var = std::max(gsq[g] / count - mean * mean, 0.0);
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t k = g * cg; k < (g + 1) * cg; ++k) {
      m[k] = static_cast<float>(mean);
      a[k] = static_cast<float>(rstd * (w ? w[k] : 1.0));
      b[k] = bias ? bias[k] : 0.0f;
    }
  }
}

void group_norm_nhwc(const float* x, float* y, int64_t n, int64_t c, int64_t hw, int64_t groups,
                     double eps, const float* w, const float* bias, bool relu) {
  const int64_t cg = c / groups;
  // Fixed-size row chunks, each with its own partial sums: the reduction order (and so the
  // result) does not depend on the number of threads.
  const int64_t chunk = std::max<int64_t>(1, 65536 / c);
  const int64_t num_chunks = (hw + chunk - 1) / chunk;
  std::vector<double> part(static_cast<size_t>(num_chunks * 2 * c));
  std::vector<double> gsum(groups), gsq(groups);
  std::vector<float> m(c), a(c), b(c);
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * hw * c;
    float* yi = y + i * hw * c;
    std::fill(part.begin(), part.end(), 0.0);
    at::parallel_for(0, num_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t row = k * chunk;
        double* s = part.data() + k * 2 * c;
        accumulate_rows(xi + row * c, std::min(chunk, hw - row), c, s, s + c);
      }
    });
    std::fill(gsum.begin(), gsum.end(), 0.0);
    std::fill(gsq.begin(), gsq.end(), 0.0);
    for (int64_t k = 0; k < num_chunks; ++k) {
      const double* s = part.data() + k * 2 * c;
      for (int64_t ch = 0; ch < c; ++ch) {
        gsum[ch / cg] += s[ch];
        gsq[ch / cg] += s[c + ch];
      }
    }
    channel_affine(gsum.data(), gsq.data(), groups, c, static_cast<double>(cg * hw), eps, w, bias,
                   m.data(), a.data(), b.data());
    at::parallel_for(0, hw, chunk, [&](int64_t begin, int64_t end) {
      affine_rows(xi + begin * c, yi + begin * c, end - begin, c, m.data(), a.data(), b.data(),
                  relu);
    });
  }
}

void group_norm_nchw(const float* x, float* y, int64_t n, int64_t c, int64_t hw, int64_t groups,
                     double eps, const float* w, const float* bias, bool relu) {
  const int64_t cg = c / groups;
  const int64_t span = cg * hw;
  at::parallel_for(0, n * groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ng = begin; ng < end; ++ng) {
      const float* xg = x + ng * span;
      float* yg = y + ng * span;
      double sum = 0, sq = 0;
      moments(xg, span, &sum, &sq);
      const double mean = sum / static_cast<double>(span);
      const double var = std::max(sq / static_cast<double>(span) - mean * mean, 0.0);
      const double rstd = 1.0 / std::sqrt(var + eps);
      const int64_t g = ng % groups;
      for (int64_t k = 0; k < cg; ++k) {
        const int64_t ch = g * cg + k;
        const float a = static_cast<float>(rstd * (w ? w[ch] : 1.0));
        const float b = bias ? bias[ch] : 0.0f;
        affine_span(xg + k * hw, yg + k * hw, hw, static_cast<float>(mean), a, b, relu);
      }
    }
  });
}

}  // namespace

bool group_norm_inference_supports(const at::Tensor& x) {
  if (!x.defined() || x.scalar_type() != at::kFloat || !x.device().is_cpu() ||
      x.layout() != at::kStrided || x.dim() < 2) {
    return false;
  }
  return x.is_contiguous() || (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast));
}

at::Tensor group_norm_inference(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                                const at::Tensor& bias, double eps, bool relu) {
  TORCH_CHECK(group_norm_inference_supports(x),
              "group_norm_inference: expected a float32 CPU tensor [N, C, *], contiguous or "
              "channels-last, got ",
              x.scalar_type(), " ", x.device(), " sizes ", x.sizes(), " strides ", x.strides());
  const int64_t n = x.size(0);
  const int64_t c = x.size(1);
  TORCH_CHECK(groups > 0 && c % groups == 0, "group_norm_inference: groups (", groups,
              ") must be positive and divide the channels (", c, ")");
  for (const at::Tensor* t : {&weight, &bias}) {
    if (t->defined()) {
      TORCH_CHECK(t->dim() == 1 && t->size(0) == c && t->scalar_type() == at::kFloat &&
                      t->device().is_cpu(),
                  "group_norm_inference: weight and bias must be float32 CPU [", c, "], got ",
                  t->scalar_type(), " ", t->sizes());
    }
  }
  TORCH_CHECK(eps >= 0, "group_norm_inference: eps must be >= 0, got ", eps);
  const int64_t hw = n * c == 0 ? 0 : x.numel() / (n * c);
  const bool nhwc = !x.is_contiguous();  // channels-last (checked above)
  at::Tensor y =
      at::empty_like(x, nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return y;
  const at::Tensor w = weight.defined() ? weight.contiguous() : at::Tensor();
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  const float* wp = w.defined() ? w.data_ptr<float>() : nullptr;
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  if (nhwc) {
    group_norm_nhwc(x.data_ptr<float>(), y.data_ptr<float>(), n, c, hw, groups, eps, wp, bp, relu);
  } else {
    group_norm_nchw(x.data_ptr<float>(), y.data_ptr<float>(), n, c, hw, groups, eps, wp, bp, relu);
  }
  return y;
}

GroupNormImpl::GroupNormImpl(const GroupNormOptions& options_) : options(options_) { reset(); }

void GroupNormImpl::reset() {
  TORCH_CHECK(options.num_groups() > 0 && options.num_channels() > 0 &&
                  options.num_channels() % options.num_groups() == 0,
              "GroupNorm: num_groups (", options.num_groups(),
              ") must be positive and divide num_channels (", options.num_channels(), ")");
  if (options.affine()) {
    weight = register_parameter("weight", torch::empty({options.num_channels()}));
    bias = register_parameter("bias", torch::empty({options.num_channels()}));
  } else {
    weight = register_parameter("weight", at::Tensor(), /*requires_grad=*/false);
    bias = register_parameter("bias", at::Tensor(), /*requires_grad=*/false);
  }
  reset_parameters();
}

void GroupNormImpl::reset_parameters() {
  if (options.affine()) {
    torch::nn::init::ones_(weight);
    torch::nn::init::zeros_(bias);
  }
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 2 && x.size(1) == options.num_channels(), "GroupNorm: expected input [N, ",
              options.num_channels(), ", *], got ", x.sizes());
  const bool needs_grad = c10::GradMode::is_enabled() &&
                          (x.requires_grad() || (weight.defined() && weight.requires_grad()) ||
                           (bias.defined() && bias.requires_grad()));
  if (!needs_grad && group_norm_inference_supports(x)) {
    return group_norm_inference(x, options.num_groups(), weight, bias, options.eps(),
                                options.relu());
  }
  at::Tensor y = at::group_norm(x, options.num_groups(), weight, bias, options.eps());
  return options.relu() ? y.relu_() : y;
}

}  // namespace setdet
