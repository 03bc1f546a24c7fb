// setdet::roi_align / setdet::_roi_align_backward: RoIAlign (He et al. 2017, Mask R-CNN) with the
// semantics of torchvision.ops.roi_align (0.14): each output bin averages grid_h x grid_w bilinear
// samples at the centres of a regular grid over the bin; grid = sampling_ratio, or
// ceil(roi size / pooled size) when sampling_ratio <= 0; a sample with y < -1, y > H, x < -1 or
// x > W contributes 0, coordinates in [-1, 0] are clamped to 0 and at or past the last pixel both
// neighbours are the last pixel; aligned = false forces the RoI to be at least 1 x 1.
//
// For finite inputs the arithmetic is torchvision's, operation for operation (same sample
// coordinates, weights, summation order and division by the sample count), so outputs and input
// gradients are bitwise equal to torchvision's CPU kernels. What differs is the work schedule:
// - the sampling positions and weights of a RoI are separable (rows x columns): computed once per
//   RoI and shared by every channel; samples outside the map are skipped instead of added as 0;
// - NCHW: threads own blocks of channels and visit all RoIs of an image while its [H, W] planes
//   of those channels are hot in cache; a sample's weights serve the whole block. The backward
//   accumulates per plane in torchvision's order (RoI, bin, sample, pixel), so it is
//   deterministic and race-free;
// - channels-last input (NHWC): the four neighbours of a sample are contiguous channel vectors;
//   the forward runs over RoIs, the backward over channel slices, both vectorised over channels.
//   Output (and input gradient) are then channels-last too.
// bfloat16 / float16 inputs are computed in float32 and cast back.
#include "setdet/ops/roi_align.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

constexpr const char* kForwardOp = "setdet::roi_align";
constexpr const char* kBackwardOp = "setdet::_roi_align_backward";

struct RoIAlignParams {
  double spatial_scale;
  int64_t pooled_height, pooled_width, sampling_ratio;
  bool aligned;
};

// One sampling coordinate along an axis: its two neighbouring pixels and their bilinear weights.
// Rows store pixel indices premultiplied by the map width.
template <typename T>
struct Tap {
  int64_t lo, hi;
  T w_lo, w_hi;
};

// torchvision's bilinear_interpolate for one axis of length `size`; false if v < -1 or v > size.
template <typename T>
bool make_tap(T v, int64_t size, int64_t scale, Tap<T>& tap) {
  if (!(v >= -1.0 && v <= static_cast<double>(size))) return false;
  if (v <= 0) v = 0;
  int64_t lo = static_cast<int64_t>(v), hi;
  if (lo >= size - 1) {
    hi = lo = size - 1;
    v = static_cast<T>(lo);
  } else {
    hi = lo + 1;
  }
  const T l = v - static_cast<T>(lo);
  tap = {lo * scale, hi * scale, T(1) - l, l};
  return true;
}

// First i in [0, n) with pred(i) false, for a pred that is true on a prefix.
template <typename Pred>
int64_t partition_point(int64_t n, Pred pred) {
  int64_t lo = 0;
  while (n > 0) {
    const int64_t half = n / 2;
    if (pred(lo + half)) {
      lo += half + 1;
      n -= half + 1;
    } else {
      n = half;
    }
  }
  return lo;
}

// The samples of every RoI, separable into rows and columns: bin (ph, pw) of RoI k averages
// rows(k, ph) x cols(k, pw) over count(k) grid points (points outside the map are not listed).
template <typename T>
class SamplingPlan {
 public:
  SamplingPlan(const T* rois, int64_t num_rois, int64_t batch_size, int64_t height, int64_t width,
               const RoIAlignParams& p)
      : ph_(p.pooled_height), pw_(p.pooled_width) {
    batch_.resize(num_rois);
    count_.resize(num_rois);
    row_begin_.assign(num_rois * ph_ + 1, 0);
    col_begin_.assign(num_rois * pw_ + 1, 0);
    const T scale = static_cast<T>(p.spatial_scale);
    const T offset = p.aligned ? T(0.5) : T(0);
    for (int64_t k = 0; k < num_rois; ++k) {
      const T* r = rois + k * 5;
      batch_[k] = static_cast<int64_t>(r[0]);
      const T x1 = r[1] * scale - offset, y1 = r[2] * scale - offset;
      T roi_w = r[3] * scale - offset - x1, roi_h = r[4] * scale - offset - y1;
      if (!p.aligned) {
        roi_w = std::max(roi_w, T(1));
        roi_h = std::max(roi_h, T(1));
      }
      const T bin_h = roi_h / static_cast<T>(ph_), bin_w = roi_w / static_cast<T>(pw_);
      const int64_t grid_h = grid_size(p.sampling_ratio, roi_h, ph_);
      const int64_t grid_w = grid_size(p.sampling_ratio, roi_w, pw_);
      count_[k] = static_cast<T>(std::max<int64_t>(grid_h * grid_w, 1));
      for (int64_t i = 0; i < ph_; ++i) {
        add_axis(y1, bin_h, i, grid_h, height, width, rows_);
        row_begin_[k * ph_ + i + 1] = static_cast<int64_t>(rows_.size());
      }
      for (int64_t j = 0; j < pw_; ++j) {
        add_axis(x1, bin_w, j, grid_w, width, 1, cols_);
        col_begin_[k * pw_ + j + 1] = static_cast<int64_t>(cols_.size());
      }
    }
    // RoIs grouped by image, ascending within an image.
    image_begin_.assign(batch_size + 1, 0);
    for (int64_t k = 0; k < num_rois; ++k) ++image_begin_[batch_[k] + 1];
    for (int64_t n = 0; n < batch_size; ++n) image_begin_[n + 1] += image_begin_[n];
    by_image_.resize(num_rois);
    std::vector<int64_t> next(image_begin_.begin(), image_begin_.end() - 1);
    for (int64_t k = 0; k < num_rois; ++k) by_image_[next[batch_[k]]++] = k;
  }

  int64_t batch(int64_t k) const { return batch_[k]; }
  T count(int64_t k) const { return count_[k]; }
  // count(k) is a power of two: (x * w) / count == (x * w) * (1 / count) exactly.
  bool count_is_power_of_two(int64_t k) const {
    int exp = 0;
    return std::frexp(count_[k], &exp) == T(0.5);
  }
  const Tap<T>* rows_begin(int64_t k, int64_t i) const {
    return rows_.data() + row_begin_[k * ph_ + i];
  }
  const Tap<T>* rows_end(int64_t k, int64_t i) const {
    return rows_.data() + row_begin_[k * ph_ + i + 1];
  }
  const Tap<T>* cols_begin(int64_t k, int64_t j) const {
    return cols_.data() + col_begin_[k * pw_ + j];
  }
  const Tap<T>* cols_end(int64_t k, int64_t j) const {
    return cols_.data() + col_begin_[k * pw_ + j + 1];
  }
  // RoI indices of image n: by_image()[image_begin(n) .. image_begin(n + 1)).
  int64_t image_begin(int64_t n) const { return image_begin_[n]; }
  const std::vector<int64_t>& by_image() const { return by_image_; }

 private:
  // torchvision: sampling_ratio, or ceil(roi size / pooled size); <= 0 means no samples (an
  // aligned RoI of negative size). Capped so that absurd RoIs cannot overflow.
  static int64_t grid_size(int64_t sampling_ratio, T roi_size, int64_t pooled) {
    if (sampling_ratio > 0) return sampling_ratio;
    const T g = std::ceil(roi_size / static_cast<T>(pooled));
    if (!(g > 0)) return 0;
    return g < T(1 << 30) ? static_cast<int64_t>(g) : int64_t{1} << 30;
  }

  // Taps of the in-map samples of bin i along one axis: coordinate
  // start + i * bin + (s + 0.5) * bin / grid, s in [0, grid), monotonic in s.
  static void add_axis(T start, T bin, int64_t i, int64_t grid, int64_t size, int64_t scale,
                       std::vector<Tap<T>>& out) {
    if (grid <= 0) return;
    const T base = start + static_cast<T>(i) * bin;
    const T g = static_cast<T>(grid);
    auto coord = [&](int64_t s) {
      return base + static_cast<T>(static_cast<float>(s) + .5f) * bin / g;
    };
    const double lo_limit = -1.0, hi_limit = static_cast<double>(size);
    int64_t first, last;
    if (coord(0) <= coord(grid - 1)) {
      first = partition_point(grid, [&](int64_t s) { return coord(s) < lo_limit; });
      last = partition_point(grid, [&](int64_t s) { return coord(s) <= hi_limit; });
    } else {
      first = partition_point(grid, [&](int64_t s) { return coord(s) > hi_limit; });
      last = partition_point(grid, [&](int64_t s) { return coord(s) >= lo_limit; });
    }
    Tap<T> tap;
    for (int64_t s = first; s < last; ++s) {
      const bool inside = make_tap(coord(s), size, scale, tap);
      TORCH_INTERNAL_ASSERT(inside);
      out.push_back(tap);
    }
  }

  int64_t ph_, pw_;
  std::vector<int64_t> batch_;
  std::vector<T> count_;
  std::vector<int64_t> row_begin_, col_begin_;
  std::vector<Tap<T>> rows_, cols_;
  std::vector<int64_t> image_begin_, by_image_;
};

// ---- NCHW: one [H, W] plane per (image, channel) ----

// Channels processed together: a sample's weights are computed once for this many planes (8
// float planes of a 200 x 304 map fit a 2 MB L2 cache).
constexpr int kChannelBlock = 8;

// Channels [c, c + B) of image n (B planes at stride hw): B independent sums per sample share
// its weights.
template <int B, typename T>
void forward_nchw_block(const T* input, T* output, const SamplingPlan<T>& plan, int64_t n,
                        int64_t c, int64_t channels, int64_t hw, int64_t ph, int64_t pw) {
  const T* planes = input + (n * channels + c) * hw;
  for (int64_t r = plan.image_begin(n); r < plan.image_begin(n + 1); ++r) {
    const int64_t k = plan.by_image()[r];
    const T count = plan.count(k);
    T* out = output + (k * channels + c) * ph * pw;
    for (int64_t i = 0; i < ph; ++i) {
      for (int64_t j = 0; j < pw; ++j) {
        T acc[B] = {};
        for (auto* y = plan.rows_begin(k, i); y != plan.rows_end(k, i); ++y) {
          for (auto* x = plan.cols_begin(k, j); x != plan.cols_end(k, j); ++x) {
            const T w1 = y->w_lo * x->w_lo, w2 = y->w_lo * x->w_hi;
            const T w3 = y->w_hi * x->w_lo, w4 = y->w_hi * x->w_hi;
            const int64_t p1 = y->lo + x->lo, p2 = y->lo + x->hi;
            const int64_t p3 = y->hi + x->lo, p4 = y->hi + x->hi;
            for (int q = 0; q < B; ++q) {
              const T* v = planes + q * hw;
              acc[q] += w1 * v[p1] + w2 * v[p2] + w3 * v[p3] + w4 * v[p4];
            }
          }
        }
        for (int q = 0; q < B; ++q) out[q * ph * pw + i * pw + j] = acc[q] / count;
      }
    }
  }
}

// Calls block(n, c, std::integral_constant<int, B>) for channels [c, c + B) of every image n,
// B = kChannelBlock (then 1 for the rest); threads own ranges of channels.
template <typename Fn>
void for_each_channel_block(int64_t batch_size, int64_t channels, const Fn& block) {
  at::parallel_for(0, channels, kChannelBlock, [&](int64_t c0, int64_t c1) {
    for (int64_t n = 0; n < batch_size; ++n) {
      int64_t c = c0;
      for (; c + kChannelBlock <= c1; c += kChannelBlock) {
        block(n, c, std::integral_constant<int, kChannelBlock>());
      }
      for (; c < c1; ++c) block(n, c, std::integral_constant<int, 1>());
    }
  });
}

template <typename T>
void forward_nchw(const T* input, T* output, const SamplingPlan<T>& plan, int64_t batch_size,
                  int64_t channels, int64_t hw, int64_t ph, int64_t pw) {
  for_each_channel_block(batch_size, channels, [&](int64_t n, int64_t c, auto block) {
    forward_nchw_block<decltype(block)::value>(input, output, plan, n, c, channels, hw, ph, pw);
  });
}

// Adds (g * w) / count of every sample of one bin to its 4 pixels in each of B planes (at stride
// hw; g: the bin's B gradients at stride g_stride), per plane in torchvision's order (RoI, bin,
// sample, pixel). kPowerOfTwo: count is a power of two, so multiplying by inv = 1 / count is
// exact.
template <int B, bool kPowerOfTwo, typename T>
inline void scatter_bin(T* planes, int64_t hw, const T* g, int64_t g_stride, T count, T inv,
                        const Tap<T>* y0, const Tap<T>* y1, const Tap<T>* x0, const Tap<T>* x1) {
  T gq[B];
  for (int q = 0; q < B; ++q) gq[q] = g[q * g_stride];
  for (auto* y = y0; y != y1; ++y) {
    for (auto* x = x0; x != x1; ++x) {
      const T w[4] = {y->w_lo * x->w_lo, y->w_lo * x->w_hi, y->w_hi * x->w_lo, y->w_hi * x->w_hi};
      const int64_t pos[4] = {y->lo + x->lo, y->lo + x->hi, y->hi + x->lo, y->hi + x->hi};
      for (int q = 0; q < B; ++q) {
        T* plane = planes + q * hw;
        for (int t = 0; t < 4; ++t) {
          plane[pos[t]] += kPowerOfTwo ? gq[q] * w[t] * inv : gq[q] * w[t] / count;
        }
      }
    }
  }
}

// Channels [c, c + B) of image n.
template <int B, typename T>
void backward_nchw_block(const T* grad, T* grad_input, const SamplingPlan<T>& plan, int64_t n,
                         int64_t c, int64_t channels, int64_t hw, int64_t ph, int64_t pw) {
  T* planes = grad_input + (n * channels + c) * hw;
  for (int64_t r = plan.image_begin(n); r < plan.image_begin(n + 1); ++r) {
    const int64_t k = plan.by_image()[r];
    const T count = plan.count(k), inv = T(1) / count;
    const bool pow2 = plan.count_is_power_of_two(k);
    const T* g = grad + (k * channels + c) * ph * pw;
    for (int64_t i = 0; i < ph; ++i) {
      for (int64_t j = 0; j < pw; ++j) {
        const T* gij = g + i * pw + j;
        auto* y0 = plan.rows_begin(k, i);
        auto* y1 = plan.rows_end(k, i);
        auto* x0 = plan.cols_begin(k, j);
        auto* x1 = plan.cols_end(k, j);
        if (pow2) {
          scatter_bin<B, true>(planes, hw, gij, ph * pw, count, inv, y0, y1, x0, x1);
        } else {
          scatter_bin<B, false>(planes, hw, gij, ph * pw, count, inv, y0, y1, x0, x1);
        }
      }
    }
  }
}

template <typename T>
void backward_nchw(const T* grad, T* grad_input, const SamplingPlan<T>& plan, int64_t batch_size,
                   int64_t channels, int64_t hw, int64_t ph, int64_t pw) {
  for_each_channel_block(batch_size, channels, [&](int64_t n, int64_t c, auto block) {
    backward_nchw_block<decltype(block)::value>(grad, grad_input, plan, n, c, channels, hw, ph, pw);
  });
}

// ---- NHWC: one contiguous channel vector per pixel ----

template <typename T>
void forward_nhwc(const T* input, T* output, const SamplingPlan<T>& plan, int64_t num_rois,
                  int64_t channels, int64_t hw, int64_t ph, int64_t pw) {
  at::parallel_for(0, num_rois, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const T* image = input + plan.batch(k) * hw * channels;
      const T count = plan.count(k);
      for (int64_t i = 0; i < ph; ++i) {
        for (int64_t j = 0; j < pw; ++j) {
          T* out = output + ((k * ph + i) * pw + j) * channels;
          std::fill(out, out + channels, T(0));
          for (auto* y = plan.rows_begin(k, i); y != plan.rows_end(k, i); ++y) {
            for (auto* x = plan.cols_begin(k, j); x != plan.cols_end(k, j); ++x) {
              const T w1 = y->w_lo * x->w_lo, w2 = y->w_lo * x->w_hi;
              const T w3 = y->w_hi * x->w_lo, w4 = y->w_hi * x->w_hi;
              const T* v1 = image + (y->lo + x->lo) * channels;
              const T* v2 = image + (y->lo + x->hi) * channels;
              const T* v3 = image + (y->hi + x->lo) * channels;
              const T* v4 = image + (y->hi + x->hi) * channels;
              for (int64_t c = 0; c < channels; ++c) {
                out[c] += w1 * v1[c] + w2 * v2[c] + w3 * v3[c] + w4 * v4[c];
              }
            }
          }
          for (int64_t c = 0; c < channels; ++c) out[c] /= count;
        }
      }
    }
  });
}

template <bool kPowerOfTwo, typename T>
inline void scatter_vector(T* dst, const T* g, T w, T count, T inv, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c] += kPowerOfTwo ? g[c] * w * inv : g[c] * w / count;
}

template <typename T>
void backward_nhwc(const T* grad, T* grad_input, const SamplingPlan<T>& plan, int64_t num_rois,
                   int64_t channels, int64_t hw, int64_t ph, int64_t pw) {
  // Threads own slices of channels: every pixel's slice is written by one thread only.
  const int64_t grain = std::min<int64_t>(channels, 16);
  at::parallel_for(0, channels, grain, [&](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    for (int64_t k = 0; k < num_rois; ++k) {
      T* image = grad_input + plan.batch(k) * hw * channels + c0;
      const T count = plan.count(k), inv = T(1) / count;
      const bool pow2 = plan.count_is_power_of_two(k);
      for (int64_t i = 0; i < ph; ++i) {
        for (int64_t j = 0; j < pw; ++j) {
          const T* g = grad + ((k * ph + i) * pw + j) * channels + c0;
          for (auto* y = plan.rows_begin(k, i); y != plan.rows_end(k, i); ++y) {
            for (auto* x = plan.cols_begin(k, j); x != plan.cols_end(k, j); ++x) {
              const T w[4] = {y->w_lo * x->w_lo, y->w_lo * x->w_hi, y->w_hi * x->w_lo,
                              y->w_hi * x->w_hi};
              const int64_t pos[4] = {y->lo + x->lo, y->lo + x->hi, y->hi + x->lo, y->hi + x->hi};
              for (int q = 0; q < 4; ++q) {
                T* dst = image + pos[q] * channels;
                if (pow2) {
                  scatter_vector<true>(dst, g, w[q], count, inv, width);
                } else {
                  scatter_vector<false>(dst, g, w[q], count, inv, width);
                }
              }
            }
          }
        }
      }
    }
  });
}

// ---- argument checks ----

// float32 / float64 are computed as they are; bfloat16 / float16 in float32.
at::ScalarType compute_type(const at::Tensor& t, const char* op, const char* arg) {
  const at::ScalarType s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kBFloat16 || s == at::kHalf, op, ": ",
              arg, " must be float32, float64, bfloat16 or float16, got ", dtype_name(s));
  return s == at::kDouble ? at::kDouble : at::kFloat;
}

void check_params(const RoIAlignParams& p, const char* op) {
  TORCH_CHECK(std::isfinite(p.spatial_scale) && p.spatial_scale > 0, op,
              ": spatial_scale must be finite and > 0, got ", p.spatial_scale);
  TORCH_CHECK(p.pooled_height > 0, op, ": pooled_height must be > 0, got ", p.pooled_height);
  TORCH_CHECK(p.pooled_width > 0, op, ": pooled_width must be > 0, got ", p.pooled_width);
}

// rois [K, 5], float, on `data`'s device: same dtype as the data (`data_arg`), or float32 for
// bfloat16 / float16 data. Returns a contiguous CPU copy in the compute type, checked finite
// with integer batch indices in [0, batch_size).
at::Tensor checked_rois(const at::Tensor& rois, const at::Tensor& data, const char* data_arg,
                        int64_t batch_size, at::ScalarType compute, const char* op) {
  TORCH_CHECK(rois.defined(), op, ": rois must be a tensor, got None");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must be a 2-D tensor of shape [K, 5] (batch index, x1, y1, x2, y2), got "
              "shape ",
              rois.sizes());
  const bool reduced = data.scalar_type() != compute;
  TORCH_CHECK(
      rois.scalar_type() == data.scalar_type() || (reduced && rois.scalar_type() == at::kFloat), op,
      ": rois must have the same dtype as ", data_arg, " (", dtype_name(data.scalar_type()),
      reduced ? " or float32" : "", "), got ", dtype_name(rois.scalar_type()));
  TORCH_CHECK(rois.device() == data.device(), op, ": rois must be on the same device as ", data_arg,
              " (", data.device(), "), got ", rois.device());
  const at::Tensor r = cpu_contiguous(rois.to(compute));
  AT_DISPATCH_FLOATING_TYPES(compute, "setdet_roi_align_rois", [&] {
    check_finite<scalar_t>(r, op, "rois");
    const scalar_t* p = r.data_ptr<scalar_t>();
    for (int64_t k = 0; k < r.size(0); ++k) {
      const scalar_t b = p[k * 5];
      TORCH_CHECK(b >= 0 && b < static_cast<scalar_t>(batch_size) && b == std::floor(b), op,
                  ": rois[", k, ", 0] must be a batch index, an integer in [0, ", batch_size,
                  "), got ", b);
    }
  });
  return r;
}

void check_map_size(int64_t height, int64_t width, int64_t num_rois, const char* op) {
  TORCH_CHECK(num_rois == 0 || (height > 0 && width > 0), op,
              ": the feature map must have height and width > 0 to sample RoIs from, got ", height,
              " x ", width);
}

// A [N, C, H, W] tensor as a CPU tensor of the compute type, dense in its suggested layout.
struct DenseCpu {
  DenseCpu(const at::Tensor& t, at::ScalarType compute)
      : nhwc(t.suggest_memory_format() == at::MemoryFormat::ChannelsLast) {
    tensor = (t.device().is_cpu() ? t : t.to(at::kCPU)).to(compute).contiguous(format());
  }
  at::MemoryFormat format() const {
    return nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  }
  // Options of new tensors with this dtype and layout.
  at::TensorOptions options() const { return tensor.options().memory_format(format()); }

  bool nhwc;
  at::Tensor tensor;
};

// ---- kernels ----

at::Tensor roi_align_kernel(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                            int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                            bool aligned) {
  const char* op = kForwardOp;
  TORCH_CHECK(input.defined(), op, ": input must be a tensor, got None");
  TORCH_CHECK(input.dim() == 4, op, ": input must be a 4-D tensor [N, C, H, W], got shape ",
              input.sizes());
  const at::ScalarType compute = compute_type(input, op, "input");
  const RoIAlignParams p{spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned};
  check_params(p, op);
  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const at::Tensor r = checked_rois(rois, input, "input", n, compute, op);
  const int64_t k = r.size(0);
  check_map_size(h, w, k, op);
  const DenseCpu x(input, compute);
  at::Tensor out = at::empty({k, c, pooled_height, pooled_width}, x.options());
  if (out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(compute, "setdet_roi_align_forward", [&] {
      const SamplingPlan<scalar_t> plan(r.data_ptr<scalar_t>(), k, n, h, w, p);
      if (x.nhwc) {
        forward_nhwc(x.tensor.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), plan, k, c, h * w,
                     pooled_height, pooled_width);
      } else {
        forward_nchw(x.tensor.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), plan, n, c, h * w,
                     pooled_height, pooled_width);
      }
    });
  }
  return out.to(input.device(), input.scalar_type());
}

at::Tensor roi_align_backward_kernel(const at::Tensor& grad, const at::Tensor& rois,
                                     double spatial_scale, int64_t pooled_height,
                                     int64_t pooled_width, int64_t batch_size, int64_t channels,
                                     int64_t height, int64_t width, int64_t sampling_ratio,
                                     bool aligned) {
  const char* op = kBackwardOp;
  TORCH_CHECK(grad.defined(), op, ": grad must be a tensor, got None");
  const at::ScalarType compute = compute_type(grad, op, "grad");
  const RoIAlignParams p{spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned};
  check_params(p, op);
  TORCH_CHECK(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0, op,
              ": batch_size, channels, height and width must be >= 0, got ", batch_size, ", ",
              channels, ", ", height, ", ", width);
  const at::Tensor r = checked_rois(rois, grad, "grad", batch_size, compute, op);
  const int64_t k = r.size(0);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == k && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              op, ": grad must have shape [K, channels, pooled_height, pooled_width] = [", k, ", ",
              channels, ", ", pooled_height, ", ", pooled_width, "], got ", grad.sizes());
  check_map_size(height, width, k, op);
  const DenseCpu g(grad, compute);
  at::Tensor grad_input = at::empty({batch_size, channels, height, width}, g.options()).zero_();
  if (g.tensor.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(compute, "setdet_roi_align_backward", [&] {
      const SamplingPlan<scalar_t> plan(r.data_ptr<scalar_t>(), k, batch_size, height, width, p);
      if (g.nhwc) {
        backward_nhwc(g.tensor.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), plan, k,
                      channels, height * width, pooled_height, pooled_width);
      } else {
        backward_nchw(g.tensor.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), plan,
                      batch_size, channels, height * width, pooled_height, pooled_width);
      }
    });
  }
  return grad_input.to(grad.device(), grad.scalar_type());
}

// ---- autograd ----

// Differentiable w.r.t. input only (as torchvision); the input gradient comes back in the
// input's memory format.
class RoIAlignFunction : public torch::autograd::Function<RoIAlignFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& input, const at::Tensor& rois,
                                                double spatial_scale, int64_t pooled_height,
                                                int64_t pooled_width, int64_t sampling_ratio,
                                                bool aligned) {
    ctx->saved_data["spatial_scale"] = spatial_scale;
    ctx->saved_data["pooled_height"] = pooled_height;
    ctx->saved_data["pooled_width"] = pooled_width;
    ctx->saved_data["sampling_ratio"] = sampling_ratio;
    ctx->saved_data["aligned"] = aligned;
    ctx->saved_data["input_shape"] = input.sizes();
    ctx->saved_data["channels_last"] =
        input.dim() == 4 && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
    ctx->save_for_backward({rois});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {call_roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                           aligned)};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 const torch::autograd::variable_list& grads) {
    const at::Tensor rois = ctx->get_saved_variables()[0];
    const auto shape = ctx->saved_data["input_shape"].toIntVector();
    const auto format = ctx->saved_data["channels_last"].toBool() ? at::MemoryFormat::ChannelsLast
                                                                  : at::MemoryFormat::Contiguous;
    const at::Tensor grad_input = call_roi_align_backward(
        grads[0].contiguous(format), rois, ctx->saved_data["spatial_scale"].toDouble(),
        ctx->saved_data["pooled_height"].toInt(), ctx->saved_data["pooled_width"].toInt(), shape[0],
        shape[1], shape[2], shape[3], ctx->saved_data["sampling_ratio"].toInt(),
        ctx->saved_data["aligned"].toBool());
    return {grad_input,   at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor roi_align_autograd(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                              int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                              bool aligned) {
  return RoIAlignFunction::apply(input, rois, spatial_scale, pooled_height, pooled_width,
                                 sampling_ratio, aligned)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) {
  m.impl("roi_align", roi_align_kernel);
  m.impl("_roi_align_backward", roi_align_backward_kernel);
}

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("roi_align", roi_align_autograd);
  m.impl("_roi_align_backward", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace setdet::ops
