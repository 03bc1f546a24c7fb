// Inference-time 2-D convolution on oneDNN (Debian's libdnnl, the library LibTorch's own
// convolutions run on) with what at::conv2d cannot do per call:
//  * weights reordered once into the layout the chosen kernel reads, per input shape (at::conv2d
//    reorders them on every call);
//  * ReLU and a residual sum fused into the convolution as post-ops (no extra passes over the
//    output);
//  * Winograd F(4x4, 3x3) for 3x3 / stride-1 layers with enough pixels, where it is ~2x faster
//    than the direct kernel at float32 accuracy (oneDNN's jit_wino_4x3, avx512 CPUs; elsewhere
//    oneDNN has no implementation and the direct kernel runs).
// Float32 tensors compute in float32; bfloat16 tensors, or float32 ones under CPU autocast to
// bfloat16, compute in bfloat16 (oneDNN's avx512_core_bf16 / AMX kernels, float32 bias and
// accumulation) and return bfloat16, as at::conv2d does under autocast.
//
// Thread-safe: concurrent calls share the cached plans and packed weights; each calling thread
// keeps its own scratch buffers between calls (as large as its largest call needed). Without gradient recording only: applicable() says when a call may use it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <memory>
#include <string>

namespace setdet {

class OneDnnConv2d {
 public:
  OneDnnConv2d() = default;
  // weight [out, in / groups, kh, kw], bias [out] or undefined; both are read when a plan for a
  // new input shape is made, so the owner must not change them in place afterwards.
  OneDnnConv2d(const at::Tensor& weight, const at::Tensor& bias, c10::IntArrayRef stride,
               c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups);

  bool defined() const { return static_cast<bool>(state_); }

  // True when operator() can run `x`: a 4-D strided CPU float32 or bfloat16 tensor, no gradient
  // recording (GradMode off or x not requiring grad), and this process's oneDNN usable.
  static bool applicable(const at::Tensor& x);

  // relu(conv(x) + bias + residual), the residual and ReLU optional. x: [N, C, H, W], contiguous
  // in NCHW or channels-last order (other strides are copied first); the output has x's memory
  // format. residual: the output's shape, any layout.
  at::Tensor operator()(const at::Tensor& x, bool relu = false,
                        const at::Tensor& residual = {}) const;

  // Which kernel ran (or would run) for an input of this shape and dtype, e.g. "jit_wino_4x3:
  // avx512_core" or "brgconv:avx512_core" (oneDNN's implementation name).
  std::string implementation(const at::Tensor& x, bool relu = false, bool residual = false) const;

 private:
  struct State;
  std::shared_ptr<State> state_;  // copies share the plans and packed weights
};

// Process-wide switch for Winograd in OneDnnConv2d (default on); off: every layer runs oneDNN's
// direct kernel. Plans already built keep their kernel.
void set_onednn_winograd(bool enabled);
bool onednn_winograd();

}  // namespace setdet
