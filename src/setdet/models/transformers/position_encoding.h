// Sinusoidal embeddings of DETR-family transformers, as the Deformable-DETR / DETA code computes
// them (models/position_encoding.py PositionEmbeddingSine with normalize=True;
// DeformableTransformer.get_proposal_pos_embed).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace setdet {

// x [..., K] (already scaled) -> [..., K * num_feats]: per input coordinate, num_feats values
// x / T^(2 floor(i / 2) / num_feats), i = 0 .. num_feats - 1, sin at even i and cos at odd i,
// interleaved (sin, cos, sin, ...). float32; num_feats even.
at::Tensor sine_embedding(const at::Tensor& x, int64_t num_feats, double temperature = 10000.0);

// mask [B, H, W] bool (true on padding) -> [B, 2 * num_feats, H, W] float32: the embedding of
// y then x, where y (x) is the cumulative count of valid rows (columns) minus 0.5, divided by
// the valid extent + 1e-6 and scaled by `scale` (2 pi).
at::Tensor sine_position_embedding(const at::Tensor& mask, int64_t num_feats,
                                   double temperature = 10000.0, double scale = 6.283185307179586);

// Two-stage query embedding of the proposals: unact [B, Q, 4] (inverse-sigmoid boxes) ->
// [B, Q, 4 * num_feats]: sine_embedding(sigmoid(unact) * 2 pi). The authors' code fixes
// num_feats at 128 (= d_model / 2 for their d_model 256); setdet uses d_model / 2.
at::Tensor proposal_position_embedding(const at::Tensor& unact, int64_t num_feats,
                                       double temperature = 10000.0);

}  // namespace setdet
