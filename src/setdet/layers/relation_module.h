// The object relation module of Hu et al., "Relation Networks for Object Detection" (CVPR 2018),
// Sec. 3, as the authors' MXNet code computes it: for every query object n and key object m,
//   w_G^{mn} = max(0, W_G . E_G(f_G^m, f_G^n))                                       Eq. (5)
//   w_A^{mn} = (W_K f_A^m) . (W_Q f_A^n) / sqrt(d_k)                                  Eq. (4)
//   w^{mn}   = softmax_m(log(max(w_G^{mn}, 1e-6)) + w_A^{mn})                         Eq. (3)
//   f_R^r(n) = sum_m w^{mn} (W_V^r f_A^m)                                             Eq. (2)
//   f_A^n   <- f_A^n + Concat_r f_R^r(n)                                              Eq. (6)
// with N_r heads. E_G embeds the relative geometry of the pair (query n, key m), centres c and
// sizes w = x2 - x1 + 1, h = y2 - y1 + 1 (the code's):
//   (log(max(|cx_n - cx_m| / w_n, 1e-3)), log(max(|cy_n - cy_m| / h_n, 1e-3)), log(w_n / w_m),
//    log(h_n / h_m))
// scaled by 100 and embedded by sines and cosines of wave length 1000 (d_g / 8 frequencies per
// coordinate: d_g / 8 sines then d_g / 8 cosines). W_V^r is applied after the aggregation, as a
// grouped linear map (N_r groups of d_f -> d_f / N_r), which equals Eq. (2).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>

#include "setdet/config/config.h"
#include "setdet/layers/geometric_weight.h"

namespace setdet {

struct RelationModuleOptions {
  explicit RelationModuleOptions(int64_t feature_dim) : feature_dim_(feature_dim) {}
  TORCH_ARG(int64_t, feature_dim);        // d_f (in = out)
  TORCH_ARG(int64_t, num_heads) = 16;     // N_r; divides feature_dim
  TORCH_ARG(int64_t, key_dim) = 64;       // d_k per head
  TORCH_ARG(int64_t, geometry_dim) = 64;  // d_g; a multiple of 8
  // Table 1 (a): "ours" (Eq. (5)), "none" (w_G = 1), "unary" (each box's own (cx, cy, w, h) in
  // pixels sinusoid-embedded to d_f and added to f_A before Eq. (4); w_G = 1).
  TORCH_ARG(std::string, geometry) = "ours";
};

class RelationModuleImpl : public torch::nn::Module {
 public:
  explicit RelationModuleImpl(const RelationModuleOptions& options);

  // features [N, d_f], boxes [N, 4] xyxy -> [N, d_f] (Eq. (6)); batched, [G, N, d_f] and
  // [G, N, 4] -> [G, N, d_f], each group related within itself. Only the first num_keys objects
  // are keys (< 0: all): during training the GT boxes appended to the proposals are queries but
  // not keys. N = 0 gives an empty output.
  // `log_weight` (optional): this module's log_geometric_weight(boxes, num_keys), computed before
  // (log_geometric_weights computes it for several modules relating the same boxes in one pass).
  at::Tensor forward(const at::Tensor& features, const at::Tensor& boxes, int64_t num_keys = -1,
                     const at::Tensor& log_weight = {});

  // The attention weights w^{mn} of Eq. (3): [N_r, N, num_keys] (rows sum to 1).
  at::Tensor attention(const at::Tensor& features, const at::Tensor& boxes, int64_t num_keys = -1);
  // The geometric weights w_G of Eq. (5) before the log: [N_r, N, num_keys] (composite path).
  at::Tensor geometric_weight(const at::Tensor& boxes, int64_t num_keys = -1);
  // E_G of every (query, key) pair: [N, num_keys, d_g] (float32, float64 for float64 boxes).
  at::Tensor geometry_embedding(const at::Tensor& boxes, int64_t num_keys = -1) const;
  // log(max(w_G, 1e-6)) of Eq. (3): [N_r, N, num_keys], float32 (float64 for float64 boxes and
  // weights), through the fused kernel where it applies.
  at::Tensor log_geometric_weight(const at::Tensor& boxes, int64_t num_keys = -1);

  const RelationModuleOptions& options() const { return options_; }

 private:
  friend std::vector<at::Tensor> log_geometric_weights(
      const std::vector<std::shared_ptr<RelationModuleImpl>>& modules, const at::Tensor& boxes,
      int64_t num_keys);
  at::Tensor logits(const at::Tensor& features, const at::Tensor& boxes, int64_t num_keys,
                    const at::Tensor& log_weight = {});

  RelationModuleOptions options_;
  torch::nn::Linear query_{nullptr}, key_{nullptr}, geometry_{nullptr};
  at::Tensor value_weight_, value_bias_;  // W_V: [N_r, d_f / N_r, d_f], [d_f]
};
TORCH_MODULE(RelationModule);

// log_geometric_weight of each module (geometry "ours") relating the same boxes, in one kernel pass
// over the box pairs (their W_G and biases concatenated): [N_r, N, num_keys] each, undefined for
// modules without a geometric weight.
std::vector<at::Tensor> log_geometric_weights(
    const std::vector<std::shared_ptr<RelationModuleImpl>>& modules, const at::Tensor& boxes,
    int64_t num_keys);

// Config node {num_heads: 16, key_dim: 64, geometry_dim: 64, geometry: ours|none|unary}; unknown
// keys are errors naming the key path.
RelationModuleOptions relation_module_options(const Config& cfg, int64_t feature_dim);

}  // namespace setdet
