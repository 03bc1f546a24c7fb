// The geometric term of the relation module's attention logits (Relation Networks Eq. (3), (5)):
//   log_geometric_weight(E, W, b)[h, n, m] = log(max(relu(W[h] . E[n, m] + b[h]), 1e-6))
// for an embedding E [N, M, d_g], W [H, d_g], b [H] -> [H, N, M]. The composite of linear, relu,
// clamp and log in one pass: on CPU in float32 a kernel computes the [N, M, H] products, the
// clamp and (through ATen's vectorised log) the log without materialising the intermediates,
// and its backward gives the gradients of W and b from the output alone. E is a constant (the
// relation module embeds detached boxes): requiring its gradient, another dtype or another
// device take the composite LibTorch path, which is also the reference in the tests.
#pragma once

#include <ATen/core/Tensor.h>

namespace setdet {

at::Tensor log_geometric_weight(const at::Tensor& embedding, const at::Tensor& weight,
                                const at::Tensor& bias);

// The composite path (at::linear, relu, clamp_min, log, permute): differentiable in all inputs.
at::Tensor log_geometric_weight_reference(const at::Tensor& embedding, const at::Tensor& weight,
                                          const at::Tensor& bias);

}  // namespace setdet
