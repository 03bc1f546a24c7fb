// The transformer of two-stage Deformable DETR with iterative box refinement (Zhu et al. 2021),
// as DETA configures it (jozhang97/DETA models/deformable_transformer.py): deformable encoder
// layers (self-attention + FFN, post-norm), encoder output proposals, query construction from the
// selected proposals, and decoder layers (self-attention, deformable cross-attention, FFN) that
// refine a box per query layer by layer. The class / box heads belong to the detector; the
// decoder calls its box heads for the refinement. Parameter names are the authors'
// (transformer.encoder.layers.0.self_attn.value_proj.weight, transformer.level_embed, ...).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <vector>

#include "setdet/layers/mlp.h"
#include "setdet/layers/ms_deform_attn_module.h"

namespace setdet {

struct DeformableTransformerOptions {
  TORCH_ARG(int64_t, d_model) = 256;
  TORCH_ARG(int64_t, nhead) = 8;
  TORCH_ARG(int64_t, num_encoder_layers) = 6;
  TORCH_ARG(int64_t, num_decoder_layers) = 6;
  TORCH_ARG(int64_t, dim_feedforward) = 1024;
  TORCH_ARG(double, dropout) = 0.1;
  TORCH_ARG(int64_t, num_feature_levels) = 4;
  TORCH_ARG(int64_t, enc_n_points) = 4;
  TORCH_ARG(int64_t, dec_n_points) = 4;
};

// x clamped to [0, 1], then log(max(x, eps) / max(1 - x, eps)) (the authors' inverse_sigmoid).
at::Tensor inverse_sigmoid(const at::Tensor& x, double eps = 1e-5);

class DeformableEncoderLayerImpl : public torch::nn::Module {
 public:
  DeformableEncoderLayerImpl(const DeformableTransformerOptions& o);
  // src, pos [N, S, C]; reference_points [N, S, L, 2]
  at::Tensor forward(const at::Tensor& src, const at::Tensor& pos,
                     const at::Tensor& reference_points, const at::Tensor& spatial_shapes,
                     const at::Tensor& level_start_index, const at::Tensor& padding_mask);

 private:
  double dropout_;
  MSDeformAttn self_attn_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Linear linear1_{nullptr}, linear2_{nullptr};
};
TORCH_MODULE(DeformableEncoderLayer);

class DeformableDecoderLayerImpl : public torch::nn::Module {
 public:
  DeformableDecoderLayerImpl(const DeformableTransformerOptions& o);
  // tgt, query_pos [N, Q, C]; reference_points [N, Q, L, 4]; memory [N, S, C]
  at::Tensor forward(const at::Tensor& tgt, const at::Tensor& query_pos,
                     const at::Tensor& reference_points, const at::Tensor& memory,
                     const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                     const at::Tensor& padding_mask);

 private:
  at::Tensor self_attention(const at::Tensor& qk, const at::Tensor& v);

  double dropout_;
  MSDeformAttn cross_attn_{nullptr};
  torch::nn::MultiheadAttention self_attn_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr};
  torch::nn::Linear linear1_{nullptr}, linear2_{nullptr};
};
TORCH_MODULE(DeformableDecoderLayer);

// The flattened multi-scale input and the encoder's output.
struct EncoderOutput {
  at::Tensor memory;             // [N, S, C]
  at::Tensor mask;               // [N, S] bool, true on padding
  at::Tensor spatial_shapes;     // [L, 2] int64 (H, W)
  at::Tensor level_start_index;  // [L] int64
  at::Tensor valid_ratios;       // [N, L, 2] float (w, h): valid fraction of each level's map
};

// gen_encoder_output_proposals: one box per encoder position.
struct EncoderProposals {
  at::Tensor memory;     // [N, S, C] enc_output_norm(enc_output(memory with invalid rows zeroed))
  at::Tensor proposals;  // [N, S, 4] inverse-sigmoid (cx, cy, w, h); +inf where invalid
  at::Tensor level_ids;  // [S] int64 level of each position
};

// What the decoder starts from.
struct DecoderQueries {
  at::Tensor tgt;              // [N, Q, C]
  at::Tensor query_pos;        // [N, Q, C]
  at::Tensor reference_boxes;  // [N, Q, 4] sigmoid (cx, cy, w, h), detached: DETA's init_reference
};

struct DecoderOutput {
  std::vector<at::Tensor> hidden;  // per layer [N, Q, C]
  // per layer [N, Q, 4]: sigmoid(bbox_embed[l](hidden[l]) + inverse_sigmoid(reference input of
  // layer l)), with gradient through the box head (the detector's outputs_coord)
  std::vector<at::Tensor> boxes;
};

class DeformableTransformerImpl : public torch::nn::Module {
 public:
  explicit DeformableTransformerImpl(const DeformableTransformerOptions& options);

  // srcs / pos: per level [N, C, H_l, W_l]; masks: per level [N, H_l, W_l] bool.
  EncoderOutput encode(const std::vector<at::Tensor>& srcs, const std::vector<at::Tensor>& masks,
                       const std::vector<at::Tensor>& pos);

  // Per position (cx, cy) = (col + 0.5, row + 0.5) / valid size, w = h = 0.05 * 2^level; positions
  // with a coordinate outside (0.01, 0.99) or on padding are invalid: proposal +inf, memory 0.
  EncoderProposals encoder_proposals(const EncoderOutput& enc);

  // The decoder's queries from the selected positions `indices` [N, Q] of the two-stage outputs:
  // boxes_unact [N, S, 4] = bbox_embed(memory) + proposals. Reference boxes = sigmoid of the
  // gathered (detached) boxes; query_pos, tgt = split(pos_trans_norm(pos_trans(proposal
  // embedding))) and tgt += pix_trans_norm(pix_trans(gathered memory, detached)).
  DecoderQueries make_queries(const EncoderProposals& proposals, const at::Tensor& boxes_unact,
                              const at::Tensor& indices);

  // Decoder with iterative box refinement: layer l samples around its reference boxes (scaled by
  // the valid ratios); its output refines them through bbox_embeds[l]; the next layer starts
  // from the refined boxes, detached.
  DecoderOutput decode(const DecoderQueries& queries, const EncoderOutput& enc,
                       std::vector<MLP>& bbox_embeds);

  const DeformableTransformerOptions& options() const { return options_; }
  at::Tensor level_embed() const { return level_embed_; }

 private:
  DeformableTransformerOptions options_;
  std::vector<DeformableEncoderLayer> encoder_layers_;
  std::vector<DeformableDecoderLayer> decoder_layers_;
  at::Tensor level_embed_;
  torch::nn::Linear enc_output_{nullptr}, pos_trans_{nullptr}, pix_trans_{nullptr};
  torch::nn::LayerNorm enc_output_norm_{nullptr}, pos_trans_norm_{nullptr},
      pix_trans_norm_{nullptr};
};
TORCH_MODULE(DeformableTransformer);

}  // namespace setdet
