#include "setdet/layers/relation_module.h"

#include "setdet/layers/geometric_weight.h"
#include "setdet/layers/onednn_matmul.h"

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/nn/init.h>

#include <cmath>

namespace setdet {
namespace {

torch::nn::Linear relation_linear(int64_t in, int64_t out) {
  torch::nn::Linear l(in, out);
  // the authors' init: weights N(0, 0.01), biases 0
  torch::nn::init::normal_(l->weight, 0.0, 0.01);
  torch::nn::init::zeros_(l->bias);
  return l;
}

}  // namespace

RelationModuleImpl::RelationModuleImpl(const RelationModuleOptions& options) : options_(options) {
  const auto& o = options_;
  const int64_t out = o.feature_dim();
  TORCH_CHECK(o.feature_dim() > 0 && o.num_heads() > 0 && o.key_dim() > 0,
              "RelationModule: feature_dim, num_heads and key_dim must be positive, got ",
              o.feature_dim(), ", ", o.num_heads(), ", ", o.key_dim());
  TORCH_CHECK(out % o.num_heads() == 0, "RelationModule: feature_dim ", out,
              " must be a multiple of num_heads (", o.num_heads(), ")");
  TORCH_CHECK(o.geometry_dim() > 0 && o.geometry_dim() % 8 == 0,
              "RelationModule: geometry_dim must be a positive multiple of 8, got ",
              o.geometry_dim());
  TORCH_CHECK(o.geometry() == "ours" || o.geometry() == "none" || o.geometry() == "unary",
              "RelationModule: geometry must be ours, none or unary, got '", o.geometry(), "'");
  TORCH_CHECK(o.geometry() != "unary" || o.feature_dim() % 8 == 0,
              "RelationModule: geometry 'unary' needs feature_dim a multiple of 8, got ",
              o.feature_dim());
  query_ = register_module("query", relation_linear(o.feature_dim(), o.num_heads() * o.key_dim()));
  key_ = register_module("key", relation_linear(o.feature_dim(), o.num_heads() * o.key_dim()));
  if (o.geometry() == "ours") {
    geometry_ = register_module("geometry", relation_linear(o.geometry_dim(), o.num_heads()));
  }
  value_weight_ = register_parameter(
      "value_weight", at::empty({o.num_heads(), out / o.num_heads(), o.feature_dim()}));
  value_bias_ = register_parameter("value_bias", at::zeros({out}));
  torch::nn::init::normal_(value_weight_, 0.0, 0.01);
}

at::Tensor RelationModuleImpl::geometry_embedding(const at::Tensor& boxes, int64_t num_keys) const {
  const int64_t m = num_keys < 0 ? boxes.size(0) : num_keys;
  const at::ScalarType dtype = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return setdet::geometry_embedding(boxes.to(dtype), m, options_.geometry_dim());
}

at::Tensor RelationModuleImpl::geometric_weight(const at::Tensor& boxes, int64_t num_keys) {
  TORCH_CHECK(options_.geometry() == "ours", "RelationModule: geometry '", options_.geometry(),
              "' has no geometric weight");
  return at::relu(linear(geometry_embedding(boxes, num_keys), geometry_)).permute({2, 0, 1});
}

at::Tensor RelationModuleImpl::log_geometric_weight(const at::Tensor& boxes, int64_t num_keys) {
  TORCH_CHECK(options_.geometry() == "ours", "RelationModule: geometry '", options_.geometry(),
              "' has no geometric weight");
  const int64_t m = num_keys < 0 ? boxes.size(0) : num_keys;
  return setdet::log_geometric_weight(boxes.to(geometry_->weight.scalar_type()), m,
                                      geometry_->weight, geometry_->bias);
}

std::vector<at::Tensor> log_geometric_weights(
    const std::vector<std::shared_ptr<RelationModuleImpl>>& modules, const at::Tensor& boxes,
    int64_t num_keys) {
  std::vector<at::Tensor> weights, biases;
  std::vector<int64_t> heads;
  for (const auto& m : modules) {
    if (m->options().geometry() != "ours") continue;
    TORCH_CHECK(m->options().geometry_dim() == modules.front()->options().geometry_dim(),
                "log_geometric_weights: the modules' geometry_dim differ");
    weights.push_back(m->geometry_->weight);
    biases.push_back(m->geometry_->bias);
    heads.push_back(m->geometry_->weight.size(0));
  }
  std::vector<at::Tensor> result(modules.size());
  if (weights.empty()) return result;
  const int64_t m = num_keys < 0 ? boxes.size(0) : num_keys;
  const at::Tensor all = setdet::log_geometric_weight(boxes.to(weights.front().scalar_type()), m,
                                                      at::cat(weights), at::cat(biases));
  int64_t start = 0;
  size_t next = 0;
  for (size_t i = 0; i < modules.size(); ++i) {
    if (modules[i]->options().geometry() != "ours") continue;
    result[i] = all.narrow(0, start, heads[next]);
    start += heads[next++];
  }
  return result;
}

// features [G, N, d_f], boxes [G, N, 4] -> [G, N_r, N, M]
at::Tensor RelationModuleImpl::logits(const at::Tensor& features, const at::Tensor& boxes,
                                      int64_t num_keys, const at::Tensor& log_weight) {
  const auto& o = options_;
  const int64_t groups = features.size(0), n = features.size(1);
  const int64_t m = num_keys < 0 ? n : num_keys;
  TORCH_CHECK(m >= 0 && m <= n, "RelationModule: num_keys must be in [0, ", n, "], got ", m);
  at::Tensor f = features;
  if (o.geometry() == "unary") {
    const auto cs = centre_size(boxes.reshape({-1, 4}).to(features.scalar_type()));
    f = f + sinusoid_embedding(at::stack({cs[0], cs[1], cs[2], cs[3]}, 1), o.feature_dim(), 1.0)
                .view({groups, n, o.feature_dim()});
  }
  // 1 / sqrt(d_k) scales q (N x d_k values) rather than the N x M logits
  const at::Tensor q = (linear(f, query_) * (1.0 / std::sqrt(static_cast<double>(o.key_dim()))))
                           .reshape({groups, n, o.num_heads(), o.key_dim()})
                           .permute({0, 2, 1, 3})
                           .reshape({groups * o.num_heads(), n, o.key_dim()});
  const at::Tensor k = linear(f.narrow(1, 0, m), key_)
                           .reshape({groups, m, o.num_heads(), o.key_dim()})
                           .permute({0, 2, 3, 1})
                           .reshape({groups * o.num_heads(), o.key_dim(), m});
  // The logits and the geometric term in float32 even under autocast: bfloat16 boxes have a 2 px
  // step at 256 px (the log-ratio features of small boxes collapse), and log(max(w_G, 1e-6)) plus
  // the appearance term need more than bfloat16's 8 bits.
  const at::ScalarType dtype =
      features.scalar_type() == at::kBFloat16 || features.scalar_type() == at::kHalf
          ? at::kFloat
          : features.scalar_type();
  at::Tensor logits = batched_matmul(q, k).to(dtype).view({groups, o.num_heads(), n, m});
  if (o.geometry() == "ours") {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    at::Tensor lw = log_weight.defined() ? log_weight : log_geometric_weight(boxes, m);
    if (lw.dim() == 3) lw = lw.unsqueeze(0);
    TORCH_CHECK(lw.dim() == 4 && lw.size(0) == groups && lw.size(1) == o.num_heads() &&
                    lw.size(2) == n && lw.size(3) == m,
                "RelationModule: the log geometric weight must be [", groups, ", ", o.num_heads(),
                ", ", n, ", ", m, "], got ", lw.sizes());
    logits = logits + lw.to(dtype);
  }
  return logits;
}

at::Tensor RelationModuleImpl::attention(const at::Tensor& features, const at::Tensor& boxes,
                                         int64_t num_keys) {
  const bool single = features.dim() == 2;
  const at::Tensor w = at::softmax(logits(single ? features.unsqueeze(0) : features,
                                          single ? boxes.unsqueeze(0) : boxes, num_keys),
                                   -1);
  return single ? w.squeeze(0) : w;
}

at::Tensor RelationModuleImpl::forward(const at::Tensor& features, const at::Tensor& boxes,
                                       int64_t num_keys, const at::Tensor& log_weight) {
  const auto& o = options_;
  const bool single = features.dim() == 2;
  TORCH_CHECK((features.dim() == 2 || features.dim() == 3) && features.size(-1) == o.feature_dim(),
              "RelationModule: features must be [N, ", o.feature_dim(), "] or [G, N, ",
              o.feature_dim(), "], got ", features.sizes());
  TORCH_CHECK(boxes.dim() == features.dim() && boxes.size(-1) == 4 &&
                  boxes.size(-2) == features.size(-2) && (single || boxes.size(0) == features.size(0)),
              "RelationModule: boxes must be [", features.sizes().slice(0, features.dim() - 1),
              ", 4], got ", boxes.sizes());
  const at::Tensor f = single ? features.unsqueeze(0) : features;  // [G, N, d_f]
  const int64_t groups = f.size(0), n = f.size(1);
  const int64_t m = num_keys < 0 ? n : num_keys;
  if (n == 0 || m == 0) return features + value_bias_;
  const at::Tensor w = at::softmax(logits(f, single ? boxes.unsqueeze(0) : boxes, m, log_weight),
                                   -1);  // [G, N_r, N, M]
  // W_V^r applied to the keys first: the same linear map as after the aggregation, fewer FLOPs.
  const int64_t per_head = o.feature_dim() / o.num_heads();
  const at::Tensor v =
      setdet::linear(f.narrow(1, 0, m), value_weight_.reshape({o.feature_dim(), o.feature_dim()}))
          .reshape({groups, m, o.num_heads(), per_head})
          .permute({0, 2, 1, 3})
          .reshape({groups * o.num_heads(), m, per_head});  // [G N_r, M, d_f / N_r]
  const at::Tensor r =
      batched_matmul(w.reshape({groups * o.num_heads(), n, m}).to(v.scalar_type()), v)
          .view({groups, o.num_heads(), n, per_head})
          .permute({0, 2, 1, 3})
          .reshape({groups, n, o.feature_dim()});
  const at::Tensor out = f + r + value_bias_;
  return single ? out.squeeze(0) : out;
}

RelationModuleOptions relation_module_options(const Config& cfg, int64_t feature_dim) {
  cfg.check_keys({"num_heads", "key_dim", "geometry_dim", "geometry"});
  RelationModuleOptions o(feature_dim);
  o.num_heads(cfg.get<int64_t>("num_heads", 16))
      .key_dim(cfg.get<int64_t>("key_dim", 64))
      .geometry_dim(cfg.get<int64_t>("geometry_dim", 64))
      .geometry(cfg.get<std::string>("geometry", "ours"));
  SETDET_CHECK(o.num_heads() > 0 && feature_dim % o.num_heads() == 0, cfg.where(),
               ".num_heads: expected a positive divisor of ", feature_dim, ", got ", o.num_heads());
  SETDET_CHECK(o.key_dim() > 0, cfg.where(), ".key_dim: expected > 0, got ", o.key_dim());
  SETDET_CHECK(o.geometry_dim() > 0 && o.geometry_dim() % 8 == 0, cfg.where(),
               ".geometry_dim: expected a positive multiple of 8, got ", o.geometry_dim());
  SETDET_CHECK(o.geometry() == "ours" || o.geometry() == "none" || o.geometry() == "unary",
               cfg.where(), ".geometry: expected ours, none or unary, got '", o.geometry(), "'");
  return o;
}

}  // namespace setdet
