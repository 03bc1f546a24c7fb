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

// xyxy -> centre x, centre y, w, h with the code's +1 sizes (kept > 0 for degenerate boxes).
std::array<at::Tensor, 4> centre_size(const at::Tensor& boxes) {
  const at::Tensor w = (boxes.select(1, 2) - boxes.select(1, 0) + 1.0).clamp_min(1e-3);
  const at::Tensor h = (boxes.select(1, 3) - boxes.select(1, 1) + 1.0).clamp_min(1e-3);
  return {0.5 * (boxes.select(1, 0) + boxes.select(1, 2)),
          0.5 * (boxes.select(1, 1) + boxes.select(1, 3)), w, h};
}

}  // namespace

at::Tensor relative_geometry(const at::Tensor& boxes, const at::Tensor& keys) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && keys.dim() == 2 && keys.size(1) == 4,
              "relative_geometry: boxes must be [N, 4] and [M, 4], got ", boxes.sizes(), " and ",
              keys.sizes());
  const auto q = centre_size(boxes);
  const auto k = centre_size(keys);
  const at::Tensor dx = (q[0].unsqueeze(1) - k[0].unsqueeze(0)).abs() / q[2].unsqueeze(1);
  const at::Tensor dy = (q[1].unsqueeze(1) - k[1].unsqueeze(0)).abs() / q[3].unsqueeze(1);
  return at::stack({dx.clamp_min(1e-3).log(), dy.clamp_min(1e-3).log(),
                    (q[2].unsqueeze(1) / k[2].unsqueeze(0)).log(),
                    (q[3].unsqueeze(1) / k[3].unsqueeze(0)).log()},
                   -1);
}

at::Tensor sinusoid_embedding(const at::Tensor& x, int64_t dim, double scale, double wave_length) {
  TORCH_CHECK(dim > 0 && dim % (2 * x.size(-1)) == 0, "sinusoid_embedding: dim (", dim,
              ") must be a positive multiple of 2 x ", x.size(-1));
  const int64_t freqs = dim / (2 * x.size(-1));
  const at::Tensor k = at::arange(freqs, x.options());
  const at::Tensor inv =
      at::pow(wave_length, k * (-2.0 * static_cast<double>(x.size(-1)) / static_cast<double>(dim)));
  const at::Tensor arg = (scale * x).unsqueeze(-1) * inv;      // [..., c, freqs]
  const at::Tensor emb = at::cat({arg.sin(), arg.cos()}, -1);  // [..., c, 2 freqs]
  auto shape = x.sizes().vec();
  shape.back() = dim;
  return emb.reshape(shape);
}

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
  const at::Tensor b = boxes.to(dtype);
  return sinusoid_embedding(relative_geometry(b, b.narrow(0, 0, m)), options_.geometry_dim());
}

at::Tensor RelationModuleImpl::checked_embedding(const at::Tensor& boxes, int64_t num_keys,
                                                 const at::Tensor& embedding) const {
  TORCH_CHECK(options_.geometry() == "ours", "RelationModule: geometry '", options_.geometry(),
              "' has no geometric weight");
  const at::Tensor emb =
      embedding.defined() ? embedding : geometry_embedding(boxes, num_keys);  // [N, M, d_g]
  TORCH_CHECK(emb.dim() == 3 && emb.size(0) == boxes.size(0) &&
                  emb.size(2) == options_.geometry_dim(),
              "RelationModule: the geometry embedding must be [", boxes.size(0), ", M, ",
              options_.geometry_dim(), "], got ", emb.sizes());
  return emb;
}

at::Tensor RelationModuleImpl::geometric_weight(const at::Tensor& boxes, int64_t num_keys,
                                                const at::Tensor& embedding) {
  const at::Tensor emb = checked_embedding(boxes, num_keys, embedding);
  return at::relu(linear(emb, geometry_)).permute({2, 0, 1});  // [N_r, N, M]
}

at::Tensor RelationModuleImpl::logits(const at::Tensor& features, const at::Tensor& boxes,
                                      int64_t num_keys, const at::Tensor& embedding) {
  const auto& o = options_;
  const int64_t n = features.size(0);
  const int64_t m = num_keys < 0 ? n : num_keys;
  TORCH_CHECK(m >= 0 && m <= n, "RelationModule: num_keys must be in [0, ", n, "], got ", m);
  at::Tensor f = features;
  if (o.geometry() == "unary") {
    const auto cs = centre_size(boxes.to(features.scalar_type()));
    f = f + sinusoid_embedding(at::stack({cs[0], cs[1], cs[2], cs[3]}, 1), o.feature_dim(), 1.0);
  }
  const at::Tensor q =
      linear(f, query_).reshape({n, o.num_heads(), o.key_dim()}).permute({1, 0, 2});
  const at::Tensor k = linear(f.narrow(0, 0, m), key_)
                           .reshape({m, o.num_heads(), o.key_dim()})
                           .permute({1, 2, 0});
  // The logits and the geometric term in float32 even under autocast: bfloat16 boxes have a 2 px
  // step at 256 px (the log-ratio features of small boxes collapse), and log(max(w_G, 1e-6)) plus
  // the appearance term need more than bfloat16's 8 bits.
  const at::ScalarType dtype =
      features.scalar_type() == at::kBFloat16 || features.scalar_type() == at::kHalf
          ? at::kFloat
          : features.scalar_type();
  at::Tensor logits =
      batched_matmul(q, k).to(dtype) / std::sqrt(static_cast<double>(o.key_dim()));  // [N_r, N, M]
  if (o.geometry() == "ours") {
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const at::Tensor emb = checked_embedding(boxes.to(dtype), m, embedding);
    logits = logits + log_geometric_weight(emb.to(geometry_->weight.scalar_type()),
                                           geometry_->weight, geometry_->bias);
  }
  return logits;
}

at::Tensor RelationModuleImpl::attention(const at::Tensor& features, const at::Tensor& boxes,
                                         int64_t num_keys) {
  return at::softmax(logits(features, boxes, num_keys), -1);
}

at::Tensor RelationModuleImpl::forward(const at::Tensor& features, const at::Tensor& boxes,
                                       int64_t num_keys, const at::Tensor& embedding) {
  const auto& o = options_;
  TORCH_CHECK(features.dim() == 2 && features.size(1) == o.feature_dim(),
              "RelationModule: features must be [N, ", o.feature_dim(), "], got ",
              features.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == features.size(0),
              "RelationModule: boxes must be [", features.size(0), ", 4], got ", boxes.sizes());
  const int64_t n = features.size(0);
  const int64_t m = num_keys < 0 ? n : num_keys;
  if (n == 0 || m == 0) return features + value_bias_;
  const at::Tensor w = at::softmax(logits(features, boxes, m, embedding), -1);  // [N_r, N, M]
  // W_V^r applied to the keys first: the same linear map as after the aggregation, fewer FLOPs.
  const int64_t per_head = o.feature_dim() / o.num_heads();
  const at::Tensor v =
      setdet::linear(features.narrow(0, 0, m), value_weight_.reshape({o.feature_dim(), o.feature_dim()}))
          .reshape({m, o.num_heads(), per_head})
          .permute({1, 0, 2});  // [N_r, M, d_f / N_r]
  return features +
         batched_matmul(w.to(v.scalar_type()), v).permute({1, 0, 2}).reshape({n, o.feature_dim()}) +
         value_bias_;
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
