// Linear layers and batched matrix products in float32 on oneDNN (transformers, the 2fc box head,
// the relation module).
// Debian's LibTorch links the reference BLAS, so at::linear / at::bmm in float32 run ~10x slower
// than oneDNN's kernels on this CPU (a 10912 x 128 x 512 linear layer: 0.58 s vs 0.063 s, forward
// and backward 3.7 s vs 0.36 s, 2 threads), while convolutions already go to oneDNN. Under CPU
// autocast (bfloat16: oneDNN too) and on other devices these are at::linear / at::bmm.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

namespace setdet {

// x [..., in] -> [..., out] = x W^T + b, differentiable w.r.t. x, weight and bias (float32 CPU:
// aten::mkldnn_linear on a oneDNN copy of x, whose backward also runs on oneDNN).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});
inline at::Tensor linear(const at::Tensor& x, const torch::nn::Linear& layer) {
  return linear(x, layer->weight, layer->bias);
}

// a [B, n, k] @ b [B, k, m] -> [B, n, m]. Without gradient recording on float32 CPU tensors, one
// oneDNN product per batch entry; otherwise at::bmm.
at::Tensor batched_matmul(const at::Tensor& a, const at::Tensor& b);

}  // namespace setdet
