#include "setdet/models/transformers/deformable_transformer.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>
#include <limits>
#include <string>

#include "setdet/layers/ms_deform_attn.h"
#include "setdet/layers/onednn_matmul.h"
#include "setdet/models/transformers/position_encoding.h"

namespace setdet {
namespace {

at::Tensor maybe_dropout(const at::Tensor& x, double p, bool training) {
  return p > 0 ? at::dropout(x, p, training) : x;
}

MSDeformAttnOptions attn_options(const DeformableTransformerOptions& o, int64_t n_points) {
  return MSDeformAttnOptions()
      .d_model(o.d_model())
      .n_levels(o.num_feature_levels())
      .n_heads(o.nhead())
      .n_points(n_points);
}

torch::nn::LayerNorm layer_norm(int64_t d) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}));
}

// LayerNorm in its parameters' dtype: LibTorch 1.13's layer_norm rejects a bfloat16 input next to
// float32 weights (CPU autocast leaves layer_norm alone).
at::Tensor norm(torch::nn::LayerNorm& ln, const at::Tensor& x) {
  return ln->forward(x.to(ln->weight.scalar_type()));
}

// The feed-forward block: linear2(dropout(relu(linear1(x)))).
at::Tensor ffn(torch::nn::Linear& l1, torch::nn::Linear& l2, const at::Tensor& x, double p,
               bool training) {
  return linear(maybe_dropout(at::relu(linear(x, l1)), p, training), l2);
}

}  // namespace

at::Tensor inverse_sigmoid(const at::Tensor& x, double eps) {
  const at::Tensor c = x.clamp(0, 1);
  return at::log(c.clamp_min(eps) / (1 - c).clamp_min(eps));
}

DeformableEncoderLayerImpl::DeformableEncoderLayerImpl(const DeformableTransformerOptions& o)
    : dropout_(o.dropout()) {
  self_attn_ = register_module("self_attn", MSDeformAttn(attn_options(o, o.enc_n_points())));
  norm1_ = register_module("norm1", layer_norm(o.d_model()));
  linear1_ = register_module("linear1", torch::nn::Linear(o.d_model(), o.dim_feedforward()));
  linear2_ = register_module("linear2", torch::nn::Linear(o.dim_feedforward(), o.d_model()));
  norm2_ = register_module("norm2", layer_norm(o.d_model()));
}

at::Tensor DeformableEncoderLayerImpl::forward(const at::Tensor& src, const at::Tensor& pos,
                                               const at::Tensor& reference_points,
                                               const at::Tensor& spatial_shapes,
                                               const at::Tensor& level_start_index,
                                               const at::Tensor& padding_mask) {
  const bool train = is_training();
  const at::Tensor attn = self_attn_->forward(src + pos, reference_points, src, spatial_shapes,
                                              level_start_index, padding_mask);
  const at::Tensor x = norm(norm1_, src + maybe_dropout(attn, dropout_, train));
  const at::Tensor f = ffn(linear1_, linear2_, x, dropout_, train);
  return norm(norm2_, x + maybe_dropout(f, dropout_, train));
}

DeformableDecoderLayerImpl::DeformableDecoderLayerImpl(const DeformableTransformerOptions& o)
    : dropout_(o.dropout()) {
  cross_attn_ = register_module("cross_attn", MSDeformAttn(attn_options(o, o.dec_n_points())));
  norm1_ = register_module("norm1", layer_norm(o.d_model()));
  self_attn_ = register_module(
      "self_attn",
      torch::nn::MultiheadAttention(
          torch::nn::MultiheadAttentionOptions(o.d_model(), o.nhead()).dropout(o.dropout())));
  norm2_ = register_module("norm2", layer_norm(o.d_model()));
  linear1_ = register_module("linear1", torch::nn::Linear(o.d_model(), o.dim_feedforward()));
  linear2_ = register_module("linear2", torch::nn::Linear(o.dim_feedforward(), o.d_model()));
  norm3_ = register_module("norm3", layer_norm(o.d_model()));
}

at::Tensor DeformableDecoderLayerImpl::forward(const at::Tensor& tgt, const at::Tensor& query_pos,
                                               const at::Tensor& reference_points,
                                               const at::Tensor& memory,
                                               const at::Tensor& spatial_shapes,
                                               const at::Tensor& level_start_index,
                                               const at::Tensor& padding_mask) {
  const bool train = is_training();
  const at::Tensor qk = tgt + query_pos;
  const at::Tensor sa = self_attention(qk, tgt);
  at::Tensor x = norm(norm2_, tgt + maybe_dropout(sa, dropout_, train));
  const at::Tensor ca = cross_attn_->forward(x + query_pos, reference_points, memory,
                                             spatial_shapes, level_start_index, padding_mask);
  x = norm(norm1_, x + maybe_dropout(ca, dropout_, train));
  const at::Tensor f = ffn(linear1_, linear2_, x, dropout_, train);
  return norm(norm3_, x + maybe_dropout(f, dropout_, train));
}

at::Tensor DeformableDecoderLayerImpl::self_attention(const at::Tensor& qk, const at::Tensor& v) {
  // torch.nn.MultiheadAttention (PyTorch 1.13) with query = key = qk, value = v, batch first:
  // per head softmax((q / sqrt(d_head)) k^T) v, then out_proj
  const auto& mha = *self_attn_;
  const int64_t n = qk.size(0), q = qk.size(1), c = qk.size(2);
  const int64_t m = mha.options.num_heads(), dh = c / m;
  const at::Tensor w = mha.in_proj_weight, b = mha.in_proj_bias;
  // [N, Q, C] -> [N * M, Q, d_head], batch-major as PyTorch's
  auto heads = [&](const at::Tensor& x) {
    return x.reshape({n, q, m, dh}).permute({0, 2, 1, 3}).reshape({n * m, q, dh});
  };
  const at::Tensor qh =
      heads(linear(qk, w.narrow(0, 0, c), b.narrow(0, 0, c))) / std::sqrt(static_cast<double>(dh));
  const at::Tensor kh = heads(linear(qk, w.narrow(0, c, c), b.narrow(0, c, c)));
  const at::Tensor vh = heads(linear(v, w.narrow(0, 2 * c, c), b.narrow(0, 2 * c, c)));
  const at::Tensor attn = maybe_dropout(
      at::softmax(batched_matmul(qh, kh.transpose(1, 2)).to(at::kFloat), -1).to(vh.scalar_type()),
      dropout_, is_training());
  const at::Tensor out =
      batched_matmul(attn, vh).reshape({n, m, q, dh}).permute({0, 2, 1, 3}).reshape({n, q, c});
  return linear(out, mha.out_proj);
}

DeformableTransformerImpl::DeformableTransformerImpl(const DeformableTransformerOptions& options)
    : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(
      o.d_model() > 0 && o.d_model() % 2 == 0 && o.nhead() > 0 && o.d_model() % o.nhead() == 0,
      "DeformableTransformer: d_model must be even and divisible by nhead, got d_model ",
      o.d_model(), ", nhead ", o.nhead());
  TORCH_CHECK(o.num_encoder_layers() >= 0 && o.num_decoder_layers() >= 1 &&
                  o.num_feature_levels() >= 1 && o.dim_feedforward() > 0,
              "DeformableTransformer: needs >= 0 encoder layers, >= 1 decoder layer, >= 1 "
              "feature level and a positive dim_feedforward");
  TORCH_CHECK(o.dropout() >= 0 && o.dropout() < 1,
              "DeformableTransformer: dropout must be in [0, 1), got ", o.dropout());
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto enc_list = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_encoder_layers(); ++i) {
    encoder_layers_.emplace_back(o);
    enc_list->push_back(encoder_layers_.back());
  }
  auto decoder = register_module("decoder", std::make_shared<torch::nn::Module>());
  auto dec_list = decoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_decoder_layers(); ++i) {
    decoder_layers_.emplace_back(o);
    dec_list->push_back(decoder_layers_.back());
  }
  level_embed_ =
      register_parameter("level_embed", at::empty({o.num_feature_levels(), o.d_model()}));
  const int64_t d = o.d_model();
  enc_output_ = register_module("enc_output", torch::nn::Linear(d, d));
  enc_output_norm_ = register_module("enc_output_norm", layer_norm(d));
  pos_trans_ = register_module("pos_trans", torch::nn::Linear(2 * d, 2 * d));
  pos_trans_norm_ = register_module("pos_trans_norm", layer_norm(2 * d));
  pix_trans_ = register_module("pix_trans", torch::nn::Linear(d, d));
  pix_trans_norm_ = register_module("pix_trans_norm", layer_norm(d));

  // the authors' _reset_parameters: Xavier on every matrix, then the attention modules' own
  // initialisation, then level_embed ~ N(0, 1)
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() > 1) torch::nn::init::xavier_uniform_(p);
  }
  for (auto& l : encoder_layers_) {
    for (auto& m : l->modules(/*include_self=*/false)) {
      if (auto* a = dynamic_cast<MSDeformAttnImpl*>(m.get())) a->reset_parameters();
    }
  }
  for (auto& l : decoder_layers_) {
    for (auto& m : l->modules(/*include_self=*/false)) {
      if (auto* a = dynamic_cast<MSDeformAttnImpl*>(m.get())) a->reset_parameters();
    }
  }
  torch::nn::init::normal_(level_embed_);
}

EncoderOutput DeformableTransformerImpl::encode(const std::vector<at::Tensor>& srcs,
                                                const std::vector<at::Tensor>& masks,
                                                const std::vector<at::Tensor>& pos) {
  const int64_t num_levels = options_.num_feature_levels();
  TORCH_CHECK(static_cast<int64_t>(srcs.size()) == num_levels && masks.size() == srcs.size() &&
                  pos.size() == srcs.size(),
              "DeformableTransformer::encode: expected ", num_levels,
              " levels of sources, masks and positions, got ", srcs.size(), ", ", masks.size(),
              ", ", pos.size());
  std::vector<at::Tensor> src_flat, mask_flat, pos_flat, ratios;
  std::vector<int64_t> shapes;
  for (int64_t l = 0; l < num_levels; ++l) {
    const at::Tensor& s = srcs[static_cast<size_t>(l)];
    const at::Tensor& m = masks[static_cast<size_t>(l)];
    TORCH_CHECK(s.dim() == 4 && s.size(1) == options_.d_model() && m.dim() == 3 &&
                    m.size(1) == s.size(2) && m.size(2) == s.size(3),
                "DeformableTransformer::encode: level ", l, ": source ", s.sizes(), ", mask ",
                m.sizes());
    shapes.push_back(s.size(2));
    shapes.push_back(s.size(3));
    src_flat.push_back(s.flatten(2).transpose(1, 2));
    mask_flat.push_back(m.flatten(1));
    pos_flat.push_back(pos[static_cast<size_t>(l)].flatten(2).transpose(1, 2) +
                       level_embed_[l].view({1, 1, -1}));
    const at::Tensor valid = m.logical_not();
    const at::Tensor vh = valid.select(2, 0).sum(1).to(at::kFloat) / static_cast<double>(s.size(2));
    const at::Tensor vw = valid.select(1, 0).sum(1).to(at::kFloat) / static_cast<double>(s.size(3));
    ratios.push_back(at::stack({vw, vh}, -1));
  }
  EncoderOutput out;
  const at::Tensor src = at::cat(src_flat, 1);
  out.mask = at::cat(mask_flat, 1);
  const at::Tensor lvl_pos = at::cat(pos_flat, 1);
  out.spatial_shapes = at::tensor(shapes, at::kLong).view({num_levels, 2}).to(src.device());
  out.level_start_index = level_start_index(out.spatial_shapes);
  out.valid_ratios = at::stack(ratios, 1).to(src.device());  // [N, L, 2]

  // encoder reference points: cell centres over the valid region, then scaled to every level
  std::vector<at::Tensor> refs;
  const auto fopt = at::TensorOptions().dtype(at::kFloat).device(src.device());
  for (int64_t l = 0; l < num_levels; ++l) {
    const int64_t h = shapes[2 * l], w = shapes[2 * l + 1];
    const auto grid = at::meshgrid(
        {at::linspace(0.5, h - 0.5, h, fopt), at::linspace(0.5, w - 0.5, w, fopt)}, "ij");
    const at::Tensor vr = out.valid_ratios.select(1, l);  // [N, 2]
    const at::Tensor ry =
        grid[0].reshape(-1).unsqueeze(0) / (vr.select(1, 1).unsqueeze(1) * static_cast<double>(h));
    const at::Tensor rx =
        grid[1].reshape(-1).unsqueeze(0) / (vr.select(1, 0).unsqueeze(1) * static_cast<double>(w));
    refs.push_back(at::stack({rx, ry}, -1));
  }
  const at::Tensor reference_points =
      at::cat(refs, 1).unsqueeze(2) * out.valid_ratios.unsqueeze(1);  // [N, S, L, 2]
  at::Tensor memory = src;
  for (auto& layer : encoder_layers_) {
    memory = layer->forward(memory, lvl_pos, reference_points, out.spatial_shapes,
                            out.level_start_index, out.mask);
  }
  out.memory = memory;
  return out;
}

EncoderProposals DeformableTransformerImpl::encoder_proposals(const EncoderOutput& enc) {
  const int64_t n = enc.memory.size(0);
  const int64_t num_levels = enc.spatial_shapes.size(0);
  const auto fopt = at::TensorOptions().dtype(at::kFloat).device(enc.memory.device());
  std::vector<at::Tensor> proposals, level_ids;
  int64_t cur = 0;
  for (int64_t l = 0; l < num_levels; ++l) {
    const int64_t h = enc.spatial_shapes[l][0].item<int64_t>();
    const int64_t w = enc.spatial_shapes[l][1].item<int64_t>();
    const at::Tensor valid = enc.mask.narrow(1, cur, h * w).view({n, h, w}).logical_not();
    const at::Tensor valid_h = valid.select(2, 0).sum(1);  // [N] int64
    const at::Tensor valid_w = valid.select(1, 0).sum(1);
    const auto g =
        at::meshgrid({at::linspace(0, h - 1, h, fopt), at::linspace(0, w - 1, w, fopt)}, "ij");
    const at::Tensor grid = at::stack({g[1], g[0]}, -1);  // [H, W, 2] (x, y)
    const at::Tensor scale = at::stack({valid_w, valid_h}, 1).view({n, 1, 1, 2});
    const at::Tensor centre = (grid.unsqueeze(0).expand({n, h, w, 2}) + 0.5) / scale;
    const at::Tensor wh = at::ones_like(centre) * 0.05 * std::pow(2.0, static_cast<double>(l));
    proposals.push_back(at::cat({centre, wh}, -1).view({n, -1, 4}));
    level_ids.push_back(at::full({h * w}, l, at::TensorOptions().dtype(at::kLong)));
    cur += h * w;
  }
  at::Tensor p = at::cat(proposals, 1);
  const at::Tensor valid = ((p > 0.01) & (p < 0.99)).all(-1, /*keepdim=*/true);
  p = at::log(p / (1 - p));
  const at::Tensor invalid = enc.mask.unsqueeze(-1).logical_or(valid.logical_not());
  EncoderProposals out;
  out.proposals = p.masked_fill(invalid, std::numeric_limits<float>::infinity());
  out.memory = norm(enc_output_norm_, linear(enc.memory.masked_fill(invalid, 0.0), enc_output_));
  out.level_ids = at::cat(level_ids).to(enc.memory.device());
  return out;
}

DecoderQueries DeformableTransformerImpl::make_queries(const EncoderProposals& proposals,
                                                       const at::Tensor& boxes_unact,
                                                       const at::Tensor& indices) {
  const int64_t d = options_.d_model();
  TORCH_CHECK(indices.dim() == 2 && indices.size(0) == boxes_unact.size(0),
              "DeformableTransformer::make_queries: indices must be [N, Q], got ", indices.sizes());
  const at::Tensor idx4 = indices.unsqueeze(-1).expand({-1, -1, 4});
  const at::Tensor unact = boxes_unact.gather(1, idx4).detach();
  DecoderQueries q;
  q.reference_boxes = unact.sigmoid();
  const at::Tensor pos =
      norm(pos_trans_norm_, linear(proposal_position_embedding(unact, d / 2), pos_trans_));
  q.query_pos = pos.narrow(2, 0, d);
  const at::Tensor feats =
      proposals.memory.gather(1, indices.unsqueeze(-1).expand({-1, -1, d})).detach();
  q.tgt = pos.narrow(2, d, d) + norm(pix_trans_norm_, linear(feats, pix_trans_));
  return q;
}

DecoderOutput DeformableTransformerImpl::decode(const DecoderQueries& queries,
                                                const EncoderOutput& enc,
                                                std::vector<MLP>& bbox_embeds) {
  TORCH_CHECK(bbox_embeds.size() >= decoder_layers_.size(),
              "DeformableTransformer::decode: ", decoder_layers_.size(), " decoder layers but ",
              bbox_embeds.size(), " box heads");
  const at::Tensor ratios = at::cat({enc.valid_ratios, enc.valid_ratios}, -1).unsqueeze(1);
  DecoderOutput out;
  at::Tensor x = queries.tgt;
  at::Tensor ref = queries.reference_boxes;
  for (size_t l = 0; l < decoder_layers_.size(); ++l) {
    x = decoder_layers_[l]->forward(x, queries.query_pos, ref.unsqueeze(2) * ratios, enc.memory,
                                    enc.spatial_shapes, enc.level_start_index, enc.mask);
    const at::Tensor boxes = (bbox_embeds[l]->forward(x) + inverse_sigmoid(ref)).sigmoid();
    out.hidden.push_back(x);
    out.boxes.push_back(boxes);
    ref = boxes.detach();
  }
  return out;
}

}  // namespace setdet
