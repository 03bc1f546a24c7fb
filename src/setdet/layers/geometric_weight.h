// The geometric term of the relation module's attention logits (Relation Networks Eq. (3), (5)):
// for queries `boxes` [N, 4] (xyxy) whose first M are also the keys,
//   log_geometric_weight(boxes, M, W, b)[h, n, m] = log(max(relu(W[h] . E_G(n, m) + b[h]), 1e-6))
// with W [H, d_g], b [H] and E_G the embedding of the pair's relative geometry as the authors'
// code computes it: centres c and sizes w = x2 - x1 + 1, h = y2 - y1 + 1,
//   (log(max(|cx_n - cx_m| / w_n, 1e-3)), log(max(|cy_n - cy_m| / h_n, 1e-3)), log(w_n / w_m),
//    log(h_n / h_m))
// scaled by 100 and embedded by sines and cosines of wave length 1000 (d_g / 8 frequencies per
// coordinate: d_g / 8 sines then d_g / 8 cosines).
//
// On CPU in float32 one kernel does it all per (query, block of 16 keys) in registers and a 4 KB
// buffer: the geometry, the sines and cosines, the H products, the clamp and the log. The N x M x
// d_g embedding (200 MB for a demo batch of 8 x 312 RoIs) is never stored; the backward recomputes
// it to give the gradients of W and b. Several relation modules relating the same boxes pass
// their W and b concatenated and share one pass. The boxes are constants (the relation module
// relates detached boxes): boxes requiring a gradient, float64 or another device take the
// composite LibTorch path (geometry_embedding + log_geometric_weight_reference).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>

namespace setdet {

// Batched: boxes [G, N, 4] (G independent sets, the first num_keys of each the keys) ->
// [G, H, N, M].
at::Tensor log_geometric_weight(const at::Tensor& boxes, int64_t num_keys, const at::Tensor& weight,
                                const at::Tensor& bias);

// The instruction set the CPU kernel uses ("avx512", "avx2" or "baseline": the best the CPU has,
// up to the limit), and a limit on it (to compare them or test each; returns the previous limit).
std::string geometric_weight_isa();
std::string limit_geometric_weight_isa(const std::string& name);

// The composite path, differentiable in all inputs: relu(linear(embedding)), clamp, log, as
// [H, N, M] for an embedding [N, M, d_g].
at::Tensor log_geometric_weight_reference(const at::Tensor& embedding, const at::Tensor& weight,
                                          const at::Tensor& bias);

// [N, 4] xyxy -> centre x, centre y, w, h with the code's +1 sizes (kept >= 1e-3 for degenerate
// boxes), [N] each.
std::array<at::Tensor, 4> centre_size(const at::Tensor& boxes);
// [N, 4] xyxy queries, [M, 4] keys -> [N, M, 4] relative geometry (the code's
// extract_position_matrix).
at::Tensor relative_geometry(const at::Tensor& boxes, const at::Tensor& keys);
// [..., 4] -> [..., dim]: per coordinate dim / 8 sines then dim / 8 cosines of scale x /
// wave_length^(8k / dim), k = 0 .. dim / 8 - 1 (the code's extract_position_embedding).
at::Tensor sinusoid_embedding(const at::Tensor& x, int64_t dim, double scale = 100.0,
                              double wave_length = 1000.0);
// E_G of every (query, key) pair, the first num_keys boxes being the keys: [N, num_keys, dim].
at::Tensor geometry_embedding(const at::Tensor& boxes, int64_t num_keys, int64_t dim);

}  // namespace setdet
