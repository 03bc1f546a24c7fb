// setdet::ms_deform_attn / setdet::_ms_deform_attn_backward: multi-scale deformable attention
// (Zhu et al. 2021, Deformable DETR, Eq. (3)), the semantics of Deformable-DETR's
// MultiScaleDeformableAttnFunction: for query q and head m,
//   out[n, q, m*D:(m+1)*D] = sum_{l, p} A[n, q, m, l, p] * bilinear(value_l[n, :, m, :], loc),
// where value_l is level l of value ([H_l * W_l, D] rows, row-major), bilinear is
// grid_sample(align_corners=False, padding_mode='zeros') at grid 2 * loc - 1, i.e. at pixel
// (loc_x * W_l - 0.5, loc_y * H_l - 0.5), neighbours outside the map reading 0.
//
// CPU kernels: value [N, S, M, D] keeps a head's D channels contiguous per position, so each of
// a sample's four neighbours is one contiguous D-vector (vectorised multiply-adds).
// - forward: parallel over (n, q) rows; a head's D outputs accumulate in vector registers over its
//   L * P samples.
// - backward: parallel over (n, m) heads (grad_value[n, :, m, :] is touched by head m of image n
//   only, so the scatter-adds are race-free and deterministic); when there are more threads than
//   heads, queries are split further into chunks that accumulate into private grad_value copies,
//   summed afterwards. Per sample: the four dot products <grad_output row, neighbour> give the
//   attention-weight and location gradients, and the row, scaled, is added to the neighbours'
//   grad_value rows.
// bfloat16 / float16 inputs are computed in float32 and cast back; under CPU autocast the op runs
// in float32 (sampling locations in 16 bits would be off by up to half a pixel on a 152-wide map).
// On other devices the op is the composite (grid_sample per level), differentiable through
// LibTorch's autograd.
#include "setdet/ops/ms_deform_attn.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

constexpr const char* kForwardOp = "setdet::ms_deform_attn";
constexpr const char* kBackwardOp = "setdet::_ms_deform_attn_backward";

// Built for AVX-512, AVX2+FMA and baseline x86-64; the loader picks one by CPU (GCC clones).
// Everything the clones call is force-inlined into them, so it is compiled for each target too.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SETDET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define SETDET_INLINE inline __attribute__((always_inline))
#else
#define SETDET_CLONES
#define SETDET_INLINE inline
#endif

// ---- argument checks ----

// Sizes of one checked call: value [N, S, M, D], sampling_locations [N, Lq, M, L, P, 2], and
// the levels' (H, W) and first positions in S.
struct Problem {
  int64_t n, s, m, d, lq, l, p;
  std::vector<int64_t> heights, widths, starts;
};

bool is_reduced_float(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

void check_defined(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " must be a tensor, got None");
}

void check_like_value(const at::Tensor& t, const at::Tensor& value, const char* op,
                      const char* arg) {
  TORCH_CHECK(t.scalar_type() == value.scalar_type(), op, ": ", arg,
              " must have the same dtype as value (", dtype_name(value.scalar_type()), "), got ",
              dtype_name(t.scalar_type()));
}

void check_device(const at::Tensor& t, const at::Tensor& value, const char* op, const char* arg) {
  TORCH_CHECK(t.device() == value.device(), op, ": ", arg, " must be on the same device as value (",
              value.device(), "), got ", t.device());
}

void check_int64(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.scalar_type() == at::kLong, op, ": ", arg, " must be int64, got ",
              dtype_name(t.scalar_type()));
}

Problem check_args(const char* op, const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  check_defined(value, op, "value");
  check_defined(spatial_shapes, op, "spatial_shapes");
  check_defined(level_start_index, op, "level_start_index");
  check_defined(sampling_locations, op, "sampling_locations");
  check_defined(attention_weights, op, "attention_weights");
  TORCH_CHECK(value.dim() == 4, op, ": value must be a 4-D tensor [N, S, M, D], got shape ",
              value.sizes());
  const at::ScalarType dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || is_reduced_float(dtype), op,
              ": value must be float32, float64, bfloat16 or float16, got ", dtype_name(dtype));
  check_like_value(sampling_locations, value, op, "sampling_locations");
  check_like_value(attention_weights, value, op, "attention_weights");
  check_device(spatial_shapes, value, op, "spatial_shapes");
  check_device(level_start_index, value, op, "level_start_index");
  check_device(sampling_locations, value, op, "sampling_locations");
  check_device(attention_weights, value, op, "attention_weights");

  TORCH_CHECK(
      spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2 && spatial_shapes.size(0) > 0, op,
      ": spatial_shapes must be a 2-D tensor [L, 2] of (H, W) per level, L >= 1, got "
      "shape ",
      spatial_shapes.sizes());
  check_int64(spatial_shapes, op, "spatial_shapes");
  Problem pb;
  pb.n = value.size(0);
  pb.s = value.size(1);
  pb.m = value.size(2);
  pb.d = value.size(3);
  pb.l = spatial_shapes.size(0);
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == pb.l, op,
              ": level_start_index must be a 1-D tensor [L] with L = ", pb.l,
              " (the levels of spatial_shapes), got shape ", level_start_index.sizes());
  check_int64(level_start_index, op, "level_start_index");
  const at::IntArrayRef loc = sampling_locations.sizes();
  TORCH_CHECK(loc.size() == 6 && loc[0] == pb.n && loc[2] == pb.m && loc[3] == pb.l && loc[5] == 2,
              op, ": sampling_locations must have shape [N, Lq, M, L, P, 2] with N = ", pb.n,
              ", M = ", pb.m, " (from value) and L = ", pb.l, " (from spatial_shapes), got shape ",
              loc);
  TORCH_CHECK(attention_weights.sizes() == loc.slice(0, 5), op,
              ": attention_weights must have shape [N, Lq, M, L, P] = ", loc.slice(0, 5),
              " (from sampling_locations), got shape ", attention_weights.sizes());
  pb.lq = loc[1];
  pb.p = loc[4];

  const at::Tensor shapes = spatial_shapes.cpu().contiguous();
  const at::Tensor starts = level_start_index.cpu().contiguous();
  const int64_t* hw = shapes.data_ptr<int64_t>();
  const int64_t* start = starts.data_ptr<int64_t>();
  std::vector<int64_t> expected_starts;
  int64_t total = 0;
  for (int64_t l = 0; l < pb.l; ++l) {
    const int64_t h = hw[2 * l], w = hw[2 * l + 1];
    TORCH_CHECK(h >= 1 && w >= 1 && h <= pb.s && w <= pb.s, op,
                ": spatial_shapes must hold (H, W) with 1 <= H, W <= S = ", pb.s,
                " (value's dim 1), got (", h, ", ", w, ") at level ", l);
    expected_starts.push_back(total);
    pb.heights.push_back(h);
    pb.widths.push_back(w);
    total += h * w;
  }
  TORCH_CHECK(total == pb.s, op, ": value must have S = ", total,
              " positions (dim 1: the sum of H * W over spatial_shapes), got ", pb.s);
  TORCH_CHECK(std::equal(expected_starts.begin(), expected_starts.end(), start), op,
              ": level_start_index must be the running sum of H * W over spatial_shapes, ",
              at::IntArrayRef(expected_starts), ", got ", at::IntArrayRef(start, pb.l));
  pb.starts = std::move(expected_starts);
  return pb;
}

// ---- bilinear sampling, grid_sample's arithmetic ----

template <typename T>
struct Level {
  int64_t h, w;
  int64_t start;  // first position of the level in value's dim 1
  T half_h, half_w;
};

template <typename T>
std::vector<Level<T>> make_levels(const Problem& pb) {
  std::vector<Level<T>> levels;
  for (int64_t l = 0; l < pb.l; ++l) {
    levels.push_back({pb.heights[l], pb.widths[l], pb.starts[l], static_cast<T>(pb.heights[l]) / 2,
                      static_cast<T>(pb.widths[l]) / 2});
  }
  return levels;
}

// The four neighbours of a sampling point, in the order (y0, x0), (y0, x1), (y1, x0), (y1, x1):
// positions within the level (-1 when outside the map) and bilinear weights; fx = x - floor(x),
// fy = y - floor(y).
template <typename T>
struct Neighbours {
  int64_t pos[4];
  T weight[4];
  T fx, fy;
};

// False when no neighbour lies inside the map (the point adds nothing) or loc is NaN.
template <typename T>
SETDET_INLINE bool locate(T loc_x, T loc_y, const Level<T>& lv, Neighbours<T>& nb) {
  // grid = 2 loc - 1, then grid_sample's unnormalisation (grid + 1) * size / 2 - 0.5, rounded
  // as grid_sample rounds it.
  const T x = (loc_x * 2 - 1 + 1) * lv.half_w - static_cast<T>(0.5);
  const T y = (loc_y * 2 - 1 + 1) * lv.half_h - static_cast<T>(0.5);
  if (!(x >= -1 && y >= -1 && x < static_cast<T>(lv.w) && y < static_cast<T>(lv.h))) return false;
  const T x0f = std::floor(x), y0f = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
  nb.fx = x - x0f;
  nb.fy = y - y0f;
  const T ex = 1 - nb.fx, ey = 1 - nb.fy;
  nb.weight[0] = ey * ex;
  nb.weight[1] = ey * nb.fx;
  nb.weight[2] = nb.fy * ex;
  nb.weight[3] = nb.fy * nb.fx;
  const bool in_x0 = x0 >= 0, in_x1 = x0 + 1 < lv.w, in_y0 = y0 >= 0, in_y1 = y0 + 1 < lv.h;
  const int64_t p = y0 * lv.w + x0;
  nb.pos[0] = in_y0 && in_x0 ? p : -1;
  nb.pos[1] = in_y0 && in_x1 ? p + 1 : -1;
  nb.pos[2] = in_y1 && in_x0 ? p + lv.w : -1;
  nb.pos[3] = in_y1 && in_x1 ? p + lv.w + 1 : -1;
  return true;
}

// ---- a head's D channels ----

// 32-byte vectors (GCC / Clang vector extensions): one AVX2 register, two SSE registers. The
// AVX-512 clone uses them too: 64-byte vectors were 10-15% faster there but made the AVX2 clone
// 5x slower (measured on this project's machine).
template <typename T>
struct Vec32;
template <>
struct Vec32<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec32<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename Vec32<T>::type;
template <typename T>
constexpr int64_t kWidth = 32 / sizeof(T);

// Unaligned load (returning the vector would change the ABI between the clones).
template <typename T>
SETDET_INLINE void load(const T* p, Vec<T>& v) {
  std::memcpy(&v, p, sizeof(v));
}

template <typename T>
SETDET_INLINE void store(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
SETDET_INLINE T sum_lanes(const Vec<T>& v) {
  if constexpr (kWidth<T> == 8) {
    const auto b =
        __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    const auto c = __builtin_shufflevector(b, b, 0, 1) + __builtin_shufflevector(b, b, 2, 3);
    return c[0] + c[1];
  } else {
    static_assert(kWidth<T> == 4);
    const auto c = __builtin_shufflevector(v, v, 0, 1) + __builtin_shufflevector(v, v, 2, 3);
    return c[0] + c[1];
  }
}

// The D values of one head (a forward accumulator, a row of grad_output), held in registers when
// kD > 0 is a multiple of the vector width, else (kD = 0, any D) in a buffer.
template <typename T, int64_t kD>
class HeadVector {
  static_assert(kD > 0 && kD % kWidth<T> == 0);
  static constexpr int64_t kVecs = kD / kWidth<T>;

 public:
  explicit HeadVector(int64_t /*d*/) {}
  SETDET_INLINE void zero() {
    for (int64_t i = 0; i < kVecs; ++i) x_[i] = Vec<T>{};
  }
  SETDET_INLINE void load_from(const T* p) {
    for (int64_t i = 0; i < kVecs; ++i) load(p + i * kWidth<T>, x_[i]);
  }
  SETDET_INLINE void store_to(T* p) const {
    for (int64_t i = 0; i < kVecs; ++i) store(p + i * kWidth<T>, x_[i]);
  }
  // this += a * v
  SETDET_INLINE void add_scaled(T a, const T* v) {
    Vec<T> y;
    for (int64_t i = 0; i < kVecs; ++i) {
      load(v + i * kWidth<T>, y);
      x_[i] += a * y;
    }
  }
  // <this, v>
  SETDET_INLINE T dot(const T* v) const {
    Vec<T> y, sum{};
    for (int64_t i = 0; i < kVecs; ++i) {
      load(v + i * kWidth<T>, y);
      sum += x_[i] * y;
    }
    return sum_lanes<T>(sum);
  }
  // out += a * this
  SETDET_INLINE void scatter_scaled(T a, T* out) const {
    Vec<T> y;
    for (int64_t i = 0; i < kVecs; ++i) {
      T* p = out + i * kWidth<T>;
      load(p, y);
      store(p, y + a * x_[i]);
    }
  }

 private:
  Vec<T> x_[kVecs];
};

template <typename T>
class HeadVector<T, 0> {
 public:
  explicit HeadVector(int64_t d) : x_(d) {}
  SETDET_INLINE void zero() { std::fill(x_.begin(), x_.end(), T(0)); }
  SETDET_INLINE void load_from(const T* p) { std::copy(p, p + x_.size(), x_.begin()); }
  SETDET_INLINE void store_to(T* p) const { std::copy(x_.begin(), x_.end(), p); }
  SETDET_INLINE void add_scaled(T a, const T* v) {
    for (size_t k = 0; k < x_.size(); ++k) x_[k] += a * v[k];
  }
  SETDET_INLINE T dot(const T* v) const {
    T sum = 0;
    for (size_t k = 0; k < x_.size(); ++k) sum += x_[k] * v[k];
    return sum;
  }
  SETDET_INLINE void scatter_scaled(T a, T* out) const {
    for (size_t k = 0; k < x_.size(); ++k) out[k] += a * x_[k];
  }

 private:
  std::vector<T> x_;
};

// ---- kernels; kD > 0: D known at compile time ----

template <typename T>
struct Tensors {
  const T* value;               // [N, S, M, D]
  const T* loc;                 // [N, Lq, M, L, P, 2]
  const T* attn;                // [N, Lq, M, L, P]
  const T* grad_out = nullptr;  // [N, Lq, M * D]
};

// Output rows [begin, end) of the flattened (n, q).
template <typename T, int64_t kD>
SETDET_INLINE void forward_rows(const Tensors<T>& t, const Problem& pb, const Level<T>* levels,
                                T* out, int64_t begin, int64_t end) {
  const int64_t d = pb.d;
  const int64_t row = pb.m * d;  // between positions in value
  const int64_t samples = pb.l * pb.p;
  HeadVector<T, kD> acc(d);
  for (int64_t nq = begin; nq < end; ++nq) {
    const T* value_n = t.value + (nq / pb.lq) * pb.s * row;
    for (int64_t m = 0; m < pb.m; ++m) {
      const int64_t head = nq * pb.m + m;
      const T* loc = t.loc + head * samples * 2;
      const T* attn = t.attn + head * samples;
      acc.zero();
      bool nan = false;
      for (int64_t l = 0; l < pb.l; ++l) {
        const Level<T>& lv = levels[l];
        const T* base = value_n + lv.start * row + m * d;
        for (int64_t p = 0; p < pb.p; ++p, loc += 2, ++attn) {
          Neighbours<T> nb;
          if (!locate(loc[0], loc[1], lv, nb)) {
            // grid_sample gives 0 (NaN for a NaN location), times the weight.
            nan |= std::isnan(loc[0]) || std::isnan(loc[1]) || !std::isfinite(*attn);
            continue;
          }
          for (int c = 0; c < 4; ++c) {
            if (nb.pos[c] >= 0) acc.add_scaled(*attn * nb.weight[c], base + nb.pos[c] * row);
          }
        }
      }
      T* o = out + head * d;
      acc.store_to(o);
      if (nan) std::fill(o, o + d, std::numeric_limits<T>::quiet_NaN());
    }
  }
}

// Queries [q_begin, q_end) of head m of image n; grad_value [N, S, M, D] (or a private copy),
// grad_loc / grad_attn zero-initialised like loc / attn.
template <typename T, int64_t kD>
SETDET_INLINE void backward_rows(const Tensors<T>& t, const Problem& pb, const Level<T>* levels,
                                 int64_t n, int64_t m, int64_t q_begin, int64_t q_end,
                                 T* grad_value, T* grad_loc, T* grad_attn) {
  const int64_t d = pb.d;
  const int64_t row = pb.m * d;
  const int64_t samples = pb.l * pb.p;
  const int64_t image = n * pb.s * row + m * d;
  HeadVector<T, kD> g(d);
  for (int64_t q = q_begin; q < q_end; ++q) {
    const int64_t head = (n * pb.lq + q) * pb.m + m;
    g.load_from(t.grad_out + head * d);
    const T* loc = t.loc + head * samples * 2;
    const T* attn = t.attn + head * samples;
    T* gl = grad_loc + head * samples * 2;
    T* ga = grad_attn + head * samples;
    for (int64_t l = 0; l < pb.l; ++l) {
      const Level<T>& lv = levels[l];
      const T* base = t.value + image + lv.start * row;
      T* grad_base = grad_value + image + lv.start * row;
      for (int64_t p = 0; p < pb.p; ++p, loc += 2, ++attn, gl += 2, ++ga) {
        Neighbours<T> nb;
        if (!locate(loc[0], loc[1], lv, nb)) continue;
        const T a = *attn;
        T dots[4] = {0, 0, 0, 0};  // g . value at each neighbour (0 outside the map)
        for (int c = 0; c < 4; ++c) {
          if (nb.pos[c] < 0) continue;
          const int64_t off = nb.pos[c] * row;
          dots[c] = g.dot(base + off);
          g.scatter_scaled(a * nb.weight[c], grad_base + off);
        }
        *ga = nb.weight[0] * dots[0] + nb.weight[1] * dots[1] + nb.weight[2] * dots[2] +
              nb.weight[3] * dots[3];
        // d(bilinear)/dx and /dy as grid_sample's backward, times dx/dloc_x = W, dy/dloc_y = H.
        const T dx = (dots[1] - dots[0]) * (1 - nb.fy) + (dots[3] - dots[2]) * nb.fy;
        const T dy = (dots[2] - dots[0]) * (1 - nb.fx) + (dots[3] - dots[1]) * nb.fx;
        gl[0] = a * dx * static_cast<T>(lv.w);
        gl[1] = a * dy * static_cast<T>(lv.h);
      }
    }
  }
}

// One clone per CPU level; D = 8, 16, 32, 64 in vector registers, any other D through a buffer.
template <typename T>
SETDET_CLONES void forward_block(const Tensors<T>& t, const Problem& pb, const Level<T>* levels,
                                 T* out, int64_t begin, int64_t end) {
  switch (pb.d) {
    case 8:
      return forward_rows<T, 8>(t, pb, levels, out, begin, end);
    case 16:
      return forward_rows<T, 16>(t, pb, levels, out, begin, end);
    case 32:
      return forward_rows<T, 32>(t, pb, levels, out, begin, end);
    case 64:
      return forward_rows<T, 64>(t, pb, levels, out, begin, end);
    default:
      return forward_rows<T, 0>(t, pb, levels, out, begin, end);
  }
}

template <typename T>
SETDET_CLONES void backward_block(const Tensors<T>& t, const Problem& pb, const Level<T>* levels,
                                  int64_t n, int64_t m, int64_t q_begin, int64_t q_end,
                                  T* grad_value, T* grad_loc, T* grad_attn) {
  switch (pb.d) {
    case 8:
      return backward_rows<T, 8>(t, pb, levels, n, m, q_begin, q_end, grad_value, grad_loc,
                                 grad_attn);
    case 16:
      return backward_rows<T, 16>(t, pb, levels, n, m, q_begin, q_end, grad_value, grad_loc,
                                  grad_attn);
    case 32:
      return backward_rows<T, 32>(t, pb, levels, n, m, q_begin, q_end, grad_value, grad_loc,
                                  grad_attn);
    case 64:
      return backward_rows<T, 64>(t, pb, levels, n, m, q_begin, q_end, grad_value, grad_loc,
                                  grad_attn);
    default:
      return backward_rows<T, 0>(t, pb, levels, n, m, q_begin, q_end, grad_value, grad_loc,
                                 grad_attn);
  }
}

// The contiguous CPU tensor the kernels read: float32 for bfloat16 / float16.
at::Tensor compute_tensor(const at::Tensor& t) {
  return (is_reduced_float(t.scalar_type()) ? t.to(at::kFloat) : t).contiguous();
}

at::Tensor ms_deform_attn_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                              const at::Tensor& level_start_index,
                              const at::Tensor& sampling_locations,
                              const at::Tensor& attention_weights) {
  const Problem pb = check_args(kForwardOp, value, spatial_shapes, level_start_index,
                                sampling_locations, attention_weights);
  const at::Tensor v = compute_tensor(value), loc = compute_tensor(sampling_locations),
                   attn = compute_tensor(attention_weights);
  at::Tensor out = at::empty({pb.n, pb.lq, pb.m * pb.d}, v.options());
  if (out.numel() == 0) return out.to(value.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "setdet_ms_deform_attn_forward", [&] {
    const std::vector<Level<scalar_t>> levels = make_levels<scalar_t>(pb);
    const Tensors<scalar_t> t{v.data_ptr<scalar_t>(), loc.data_ptr<scalar_t>(),
                              attn.data_ptr<scalar_t>()};
    scalar_t* o = out.data_ptr<scalar_t>();
    // A row is M * L * P samples of 4 x D multiply-adds: at least ~128k per block.
    const int64_t grain =
        std::max<int64_t>(1, 32768 / std::max<int64_t>(1, pb.m * pb.l * pb.p * pb.d));
    at::parallel_for(0, pb.n * pb.lq, grain, [&](int64_t begin, int64_t end) {
      forward_block<scalar_t>(t, pb, levels.data(), o, begin, end);
    });
  });
  return out.to(value.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const Problem pb = check_args(kBackwardOp, value, spatial_shapes, level_start_index,
                                sampling_locations, attention_weights);
  check_defined(grad_output, kBackwardOp, "grad_output");
  check_like_value(grad_output, value, kBackwardOp, "grad_output");
  check_device(grad_output, value, kBackwardOp, "grad_output");
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({pb.n, pb.lq, pb.m * pb.d}), kBackwardOp,
              ": grad_output must have shape [N, Lq, M * D] = [", pb.n, ", ", pb.lq, ", ",
              pb.m * pb.d, "], got shape ", grad_output.sizes());
  const at::Tensor v = compute_tensor(value), loc = compute_tensor(sampling_locations),
                   attn = compute_tensor(attention_weights), g = compute_tensor(grad_output);
  at::Tensor grad_value = at::zeros_like(v), grad_loc = at::zeros_like(loc),
             grad_attn = at::zeros_like(attn);
  if (g.numel() > 0 && pb.l * pb.p > 0) {
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "setdet_ms_deform_attn_backward", [&] {
      const std::vector<Level<scalar_t>> levels = make_levels<scalar_t>(pb);
      const Tensors<scalar_t> t{v.data_ptr<scalar_t>(), loc.data_ptr<scalar_t>(),
                                attn.data_ptr<scalar_t>(), g.data_ptr<scalar_t>()};
      const int64_t heads = pb.n * pb.m;
      const int64_t chunks = std::min<int64_t>(pb.lq, (at::get_num_threads() + heads - 1) / heads);
      // Chunk 0 of every head accumulates into grad_value, chunk k > 0 into copy k - 1.
      at::Tensor copies =
          chunks > 1 ? at::zeros({chunks - 1, pb.n, pb.s, pb.m, pb.d}, v.options()) : at::Tensor();
      const int64_t per_chunk = (pb.lq + chunks - 1) / chunks;
      scalar_t* grad_value_data = grad_value.data_ptr<scalar_t>();
      scalar_t* copies_data = copies.defined() ? copies.data_ptr<scalar_t>() : nullptr;
      scalar_t* grad_loc_data = grad_loc.data_ptr<scalar_t>();
      scalar_t* grad_attn_data = grad_attn.data_ptr<scalar_t>();
      const int64_t copy_size = grad_value.numel();
      at::parallel_for(0, heads * chunks, 1, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t chunk = task / heads, head = task % heads;
          scalar_t* gv = chunk == 0 ? grad_value_data : copies_data + (chunk - 1) * copy_size;
          const int64_t q_begin = chunk * per_chunk;
          const int64_t q_end = std::min(pb.lq, q_begin + per_chunk);
          backward_block<scalar_t>(t, pb, levels.data(), head / pb.m, head % pb.m, q_begin, q_end,
                                   gv, grad_loc_data, grad_attn_data);
        }
      });
      if (copies.defined()) grad_value.add_(copies.sum(0));
    });
  }
  const at::ScalarType dtype = value.scalar_type();
  return {grad_value.to(dtype), grad_loc.to(dtype), grad_attn.to(dtype)};
}

// ---- autograd and autocast ----

class MsDeformAttnFunction : public torch::autograd::Function<MsDeformAttnFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& value,
                                                const at::Tensor& spatial_shapes,
                                                const at::Tensor& level_start_index,
                                                const at::Tensor& sampling_locations,
                                                const at::Tensor& attention_weights) {
    ctx->save_for_backward(
        {value, spatial_shapes, level_start_index, sampling_locations, attention_weights});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {call_ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                                attention_weights)};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 const torch::autograd::variable_list& grads) {
    const auto saved = ctx->get_saved_variables();
    auto [grad_value, grad_loc, grad_attn] = call_ms_deform_attn_backward(
        grads[0].contiguous(), saved[0], saved[1], saved[2], saved[3], saved[4]);
    return {grad_value, at::Tensor(), at::Tensor(), grad_loc, grad_attn};
  }
};

// CPU: the kernels above; other devices: the composite, recorded op by op.
at::Tensor ms_deform_attn_autograd(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                   const at::Tensor& level_start_index,
                                   const at::Tensor& sampling_locations,
                                   const at::Tensor& attention_weights) {
  if (value.defined() && !value.is_cpu()) {
    return ms_deform_attn_composite(value, spatial_shapes, level_start_index, sampling_locations,
                                    attention_weights);
  }
  return MsDeformAttnFunction::apply(value, spatial_shapes, level_start_index, sampling_locations,
                                     attention_weights)[0];
}

// Autocast's float32 policy (as for grid_sample): reduced-precision inputs are cast to float32.
at::Tensor ms_deform_attn_autocast_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  const auto to_float = [](const at::Tensor& t) {
    return t.defined() && is_reduced_float(t.scalar_type()) ? t.to(at::kFloat) : t;
  };
  return call_ms_deform_attn(to_float(value), spatial_shapes, level_start_index,
                             to_float(sampling_locations), to_float(attention_weights));
}

}  // namespace

at::Tensor ms_deform_attn_composite(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                    const at::Tensor& level_start_index,
                                    const at::Tensor& sampling_locations,
                                    const at::Tensor& attention_weights) {
  const Problem pb = check_args(kForwardOp, value, spatial_shapes, level_start_index,
                                sampling_locations, attention_weights);
  const at::ScalarType dtype = value.scalar_type();
  if (is_reduced_float(dtype)) {
    return ms_deform_attn_composite(value.to(at::kFloat), spatial_shapes, level_start_index,
                                    sampling_locations.to(at::kFloat),
                                    attention_weights.to(at::kFloat))
        .to(dtype);
  }
  if (pb.n * pb.lq * pb.m * pb.d == 0)
    return at::zeros({pb.n, pb.lq, pb.m * pb.d}, value.options());
  const at::Tensor grid = sampling_locations * 2 - 1;  // [N, Lq, M, L, P, 2]
  std::vector<at::Tensor> sampled;                     // per level [N * M, D, Lq, P]
  for (int64_t l = 0; l < pb.l; ++l) {
    const int64_t h = pb.heights[l], w = pb.widths[l];
    const at::Tensor value_l = value.narrow(1, pb.starts[l], h * w)
                                   .permute({0, 2, 3, 1})
                                   .reshape({pb.n * pb.m, pb.d, h, w});
    const at::Tensor grid_l =
        grid.select(3, l).transpose(1, 2).reshape({pb.n * pb.m, pb.lq, pb.p, 2});
    sampled.push_back(at::grid_sampler(value_l, grid_l, /*interpolation_mode=bilinear*/ 0,
                                       /*padding_mode=zeros*/ 0, /*align_corners=*/false));
  }
  const at::Tensor weights =
      attention_weights.transpose(1, 2).reshape({pb.n * pb.m, 1, pb.lq, pb.l * pb.p});
  return (at::stack(sampled, -2).flatten(-2) * weights)
      .sum(-1)
      .view({pb.n, pb.m * pb.d, pb.lq})
      .transpose(1, 2)
      .contiguous();
}

TORCH_LIBRARY_IMPL(setdet, CPU, m) {
  m.impl("ms_deform_attn", ms_deform_attn_cpu);
  m.impl("_ms_deform_attn_backward", ms_deform_attn_backward_cpu);
}

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) {
  m.impl("ms_deform_attn", ms_deform_attn_composite);
}

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("ms_deform_attn", ms_deform_attn_autograd);
  m.impl("_ms_deform_attn_backward", torch::autograd::autogradNotImplementedFallback());
}

TORCH_LIBRARY_IMPL(setdet, AutocastCPU, m) {
  m.impl("ms_deform_attn", ms_deform_attn_autocast_cpu);
}

}  // namespace setdet::ops
