#include "setdet/models/detectors/deformable_detr.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>

#include "setdet/layers/float32_group_norm.h"
#include "setdet/layers/onednn_matmul.h"
#include "setdet/losses/focal_loss.h"
#include "setdet/losses/iou_loss.h"
#include "setdet/models/transformers/position_encoding.h"
#include "setdet/structures/box_ops.h"

namespace setdet {
namespace {

// [B, H, W] bool, true outside each image's input (resized, unpadded) region.
at::Tensor padding_mask_of(const Batch& batch) {
  const int64_t b = batch.images.size(0), h = batch.images.size(2), w = batch.images.size(3);
  at::Tensor mask = at::ones({b, h, w}, at::kBool);
  for (int64_t i = 0; i < b; ++i) {
    const auto& m = batch.metas[static_cast<size_t>(i)];
    const int64_t ih = m.input_hw[0] > 0 ? std::min(m.input_hw[0], h) : h;
    const int64_t iw = m.input_hw[1] > 0 ? std::min(m.input_hw[1], w) : w;
    mask[i].narrow(0, 0, ih).narrow(1, 0, iw).fill_(false);
  }
  return mask.to(batch.images.device());
}

// DETR: F.interpolate(mask[None].float(), size).bool()[0] (nearest)
at::Tensor resize_mask(const at::Tensor& mask, int64_t h, int64_t w) {
  return at::upsample_nearest2d(mask.unsqueeze(0).to(at::kFloat), {h, w}).squeeze(0).to(at::kBool);
}

// per image [M, 4] (w, h, w, h) of its input region
at::Tensor image_scale(const ImageMeta& meta, const std::array<int64_t, 2>& padded) {
  const auto hw = input_size(meta, padded);
  return at::tensor({hw[1], hw[0], hw[1], hw[0]}, at::kFloat);
}

// dst's parameters := src's (same structure)
void copy_parameters(const torch::nn::Module& src, torch::nn::Module& dst) {
  torch::NoGradGuard no_grad;
  const auto from = src.named_parameters();
  for (auto& p : dst.named_parameters()) p.value().copy_(from[p.key()]);
}

}  // namespace

DeformableDETR::DeformableDETR(DeformableDETRParts parts)
    : num_classes_(parts.num_classes),
      num_queries_(parts.num_queries),
      backbone_(std::move(parts.backbone)),
      train_(parts.train),
      selection_(parts.selection),
      test_(std::move(parts.test)),
      channels_last_(parts.channels_last) {
  const auto& to = parts.transformer;
  TORCH_CHECK(num_classes_ > 0, "DeformableDETR: num_classes must be positive, got ", num_classes_);
  TORCH_CHECK(num_queries_ > 0, "DeformableDETR: num_queries must be positive, got ", num_queries_);
  TORCH_CHECK(backbone_ != nullptr, "DeformableDETR: a backbone is required");
  const auto shapes = backbone_->output_shape();
  const int64_t nb = static_cast<int64_t>(shapes.size());
  const int64_t d = to.d_model();
  TORCH_CHECK(to.num_feature_levels() >= nb, "DeformableDETR: num_feature_levels (",
              to.num_feature_levels(), ") must be >= the backbone's ", nb, " levels");
  TORCH_CHECK(d % 32 == 0, "DeformableDETR: d_model must be a multiple of 32 (GroupNorm(32)), got ",
              d);

  auto outer = register_module("backbone", std::make_shared<torch::nn::Module>());
  auto joiner = outer->register_module("0", std::make_shared<torch::nn::Module>());
  joiner->register_module("body", backbone_);

  auto proj_list = register_module("input_proj", torch::nn::ModuleList());
  int64_t in_channels = 0;
  for (int64_t l = 0; l < to.num_feature_levels(); ++l) {
    const bool extra = l >= nb;
    in_channels = extra ? (l == nb ? shapes.back().channels : d) : shapes[l].channels;
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(in_channels, d, extra ? 3 : 1)
                               .stride(extra ? 2 : 1)
                               .padding(extra ? 1 : 0));
    {
      torch::NoGradGuard no_grad;
      torch::nn::init::xavier_uniform_(conv->weight, 1.0);
      torch::nn::init::zeros_(conv->bias);
    }
    torch::nn::Sequential seq(conv, Float32GroupNorm(torch::nn::GroupNormOptions(32, d)));
    proj_list->push_back(seq);
    input_proj_.push_back(seq);
  }

  transformer_ = register_module("transformer", DeformableTransformer(to));

  // One head per decoder layer plus the first stage, deep copies of one initialised head as the
  // authors' _get_clones: class bias -log((1 - 0.01) / 0.01), last box layer zero.
  const int64_t num_pred = to.num_decoder_layers() + 1;
  torch::nn::Linear cls_proto(d, num_classes_);
  MLP box_proto(d, d, 4, 3);
  {
    torch::NoGradGuard no_grad;
    cls_proto->bias.fill_(-std::log((1 - 0.01) / 0.01));
    torch::nn::init::zeros_(box_proto->last()->weight);
    torch::nn::init::zeros_(box_proto->last()->bias);
  }
  auto cls_list = register_module("class_embed", torch::nn::ModuleList());
  auto box_list = register_module("bbox_embed", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_pred; ++i) {
    class_embed_.emplace_back(d, num_classes_);
    bbox_embed_.emplace_back(d, d, 4, 3);
    copy_parameters(*cls_proto, *class_embed_.back());
    copy_parameters(*box_proto, *bbox_embed_.back());
    cls_list->push_back(class_embed_.back());
    box_list->push_back(bbox_embed_.back());
  }
}

DeformableDETROutputs DeformableDETR::forward_outputs(const at::Tensor& images,
                                                      const at::Tensor& padding_mask) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3,
              "DeformableDETR: images must be [B, 3, H, W], got ", images.sizes());
  const at::Tensor mask = padding_mask.defined()
                              ? padding_mask
                              : at::zeros({images.size(0), images.size(2), images.size(3)},
                                          images.options().dtype(at::kBool));
  const auto& to = transformer_->options();
  const int64_t d = to.d_model();
  const std::vector<at::Tensor> feats = backbone_->forward(
      channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast) : images);
  const int64_t nb = static_cast<int64_t>(feats.size());
  std::vector<at::Tensor> srcs, masks, pos;
  for (int64_t l = 0; l < to.num_feature_levels(); ++l) {
    const at::Tensor in = l < nb ? feats[l] : (l == nb ? feats.back() : srcs.back());
    const at::Tensor src = input_proj_[static_cast<size_t>(l)]->forward(in);
    const at::Tensor m = resize_mask(mask, src.size(2), src.size(3));
    srcs.push_back(src);
    masks.push_back(m);
    pos.push_back(sine_position_embedding(m, d / 2).to(src.scalar_type()));
  }
  const EncoderOutput enc = transformer_->encode(srcs, masks, pos);
  const EncoderProposals props = transformer_->encoder_proposals(enc);
  const int64_t num_dec = to.num_decoder_layers();
  DeformableDETROutputs out;
  out.enc_logits = linear(props.memory, class_embed_[num_dec]).to(at::kFloat);
  const at::Tensor boxes_unact =
      bbox_embed_[num_dec]->forward(props.memory).to(at::kFloat) + props.proposals;
  const int64_t s = boxes_unact.size(1);
  TORCH_CHECK(num_queries_ <= s, "DeformableDETR: ", num_queries_,
              " queries but the encoder has only ", s, " positions for this input");
  const at::Tensor rank_logits = out.enc_logits.select(2, 0);
  if (selection_.deta) {
    const at::Tensor boxes = box_cxcywh_to_xyxy(boxes_unact.sigmoid()).clamp(0, 1);
    out.query_indices =
        deta_query_selection(rank_logits, boxes, props.level_ids, to.num_feature_levels(),
                             num_queries_, selection_.options);
  } else {
    out.query_indices = topk_query_selection(rank_logits.detach(), num_queries_);
  }
  const DecoderQueries queries = transformer_->make_queries(props, boxes_unact, out.query_indices);
  const DecoderOutput dec = transformer_->decode(queries, enc, bbox_embed_);
  for (int64_t l = 0; l < num_dec; ++l) {
    out.logits.push_back(linear(dec.hidden[l], class_embed_[l]).to(at::kFloat));
    out.boxes.push_back(dec.boxes[l].to(at::kFloat));
  }
  out.reference_boxes = queries.reference_boxes;
  out.enc_boxes = boxes_unact.sigmoid();
  out.anchors = props.proposals.sigmoid();
  return out;
}

std::vector<at::Tensor> DeformableDETR::forward_network(const at::Tensor& images) {
  const DeformableDETROutputs out = forward_outputs(images);
  return {out.logits.back(), out.boxes.back()};
}

std::vector<PositivePairs> DeformableDETR::assign_decoder(
    const DeformableDETROutputs& out, int64_t layer, const std::vector<at::Tensor>& gt_boxes,
    const std::vector<at::Tensor>& gt_labels) const {
  std::vector<PositivePairs> pairs;
  const int64_t b = out.reference_boxes.size(0);
  if (train_.assigner == DetrAssignment::kDeta) {
    const DetaIoUAssigner stage2(train_.stage2);
    for (int64_t i = 0; i < b; ++i) {
      pairs.push_back(stage2.assign(box_cxcywh_to_xyxy(out.reference_boxes[i]),
                                    box_cxcywh_to_xyxy(gt_boxes[static_cast<size_t>(i)])));
    }
  } else {
    for (int64_t i = 0; i < b; ++i) {
      pairs.push_back(hungarian_match(out.logits[layer][i], out.boxes[layer][i],
                                      gt_labels[static_cast<size_t>(i)],
                                      gt_boxes[static_cast<size_t>(i)], train_.matcher));
    }
  }
  return pairs;
}

std::vector<PositivePairs> DeformableDETR::assign_encoder(
    const DeformableDETROutputs& out, const std::vector<at::Tensor>& gt_boxes) const {
  std::vector<PositivePairs> pairs;
  const int64_t b = out.anchors.size(0);
  if (train_.assigner == DetrAssignment::kDeta) {
    const DetaIoUAssigner stage1(train_.stage1);
    for (int64_t i = 0; i < b; ++i) {
      pairs.push_back(stage1.assign(box_cxcywh_to_xyxy(out.anchors[i]),
                                    box_cxcywh_to_xyxy(gt_boxes[static_cast<size_t>(i)])));
    }
  } else {
    for (int64_t i = 0; i < b; ++i) {
      const at::Tensor& g = gt_boxes[static_cast<size_t>(i)];
      pairs.push_back(hungarian_match(out.enc_logits[i], out.enc_boxes[i],
                                      at::zeros({g.size(0)}, at::kLong), g, train_.matcher));
    }
  }
  return pairs;
}

std::map<std::string, at::Tensor> DeformableDETR::set_losses(
    const at::Tensor& logits, const at::Tensor& boxes, const std::vector<PositivePairs>& pairs,
    const std::vector<at::Tensor>& gt_boxes, const std::vector<at::Tensor>& gt_labels,
    double num_boxes) const {
  const int64_t b = logits.size(0), q = logits.size(1), c = logits.size(2);
  // one class per query: background (c) unless paired; a query paired with several GTs takes the
  // last pair's class (the reference's index assignment)
  at::Tensor classes = at::full({b, q}, c, at::kLong);
  auto acc = classes.accessor<int64_t, 2>();
  std::vector<at::Tensor> src_boxes, tgt_boxes;
  int64_t num_pos = 0;
  for (int64_t i = 0; i < b; ++i) {
    const PositivePairs& p = pairs[static_cast<size_t>(i)];
    const at::Tensor pred = p.pred.to(at::kCPU), gt = p.gt.to(at::kCPU);
    const at::Tensor lab = gt_labels[static_cast<size_t>(i)].to(at::kCPU).index_select(0, gt);
    for (int64_t k = 0; k < pred.numel(); ++k) {
      acc[i][pred[k].item<int64_t>()] = lab[k].item<int64_t>();
    }
    num_pos += pred.numel();
    src_boxes.push_back(boxes[i].index_select(0, p.pred.to(boxes.device())));
    tgt_boxes.push_back(gt_boxes[static_cast<size_t>(i)]
                            .to(boxes.device())
                            .index_select(0, p.gt.to(boxes.device())));
  }
  const at::Tensor onehot =
      at::one_hot(classes, c + 1).narrow(2, 0, c).to(logits.device(), logits.scalar_type());
  std::map<std::string, at::Tensor> out;
  out["loss_cls"] =
      sigmoid_focal_loss(logits, onehot, train_.focal_alpha, train_.focal_gamma).sum() *
      (train_.cls_weight / num_boxes);
  const at::Tensor sb = at::cat(src_boxes), tb = at::cat(tgt_boxes);
  out["loss_bbox"] = (sb - tb).abs().sum() * (train_.bbox_weight / num_boxes);
  out["loss_giou"] = sb.numel() == 0
                         ? sb.sum()
                         : giou_loss(box_cxcywh_to_xyxy(sb), box_cxcywh_to_xyxy(tb)).sum() *
                               (train_.giou_weight / num_boxes);
  out["num_pos"] = at::scalar_tensor(static_cast<double>(num_pos));
  return out;
}

std::map<std::string, at::Tensor> DeformableDETR::losses(const Batch& batch) {
  TORCH_CHECK(batch.images.defined(), "DeformableDETR::losses: batch.images is undefined");
  const int64_t b = batch.images.size(0);
  TORCH_CHECK(batch.size() == b && static_cast<int64_t>(batch.boxes.size()) == b &&
                  static_cast<int64_t>(batch.labels.size()) == b,
              "DeformableDETR::losses: ", b, " images but ", batch.size(), " metas, ",
              batch.boxes.size(), " box tensors and ", batch.labels.size(), " label tensors");
  const DeformableDETROutputs out = forward_outputs(batch.images, padding_mask_of(batch));
  // targets: normalised (cx, cy, w, h) of each image's input region
  const auto padded = padded_size(batch);
  std::vector<at::Tensor> gt_boxes, gt_labels, zero_labels;
  int64_t total_gt = 0;
  for (int64_t i = 0; i < b; ++i) {
    const at::Tensor scale = image_scale(batch.metas[static_cast<size_t>(i)], padded);
    gt_boxes.push_back(
        box_xyxy_to_cxcywh(batch.boxes[static_cast<size_t>(i)].to(at::kFloat) / scale)
            .to(out.enc_boxes.device()));
    gt_labels.push_back(batch.labels[static_cast<size_t>(i)].to(at::kLong));
    zero_labels.push_back(at::zeros_like(gt_labels.back()));
    total_gt += gt_boxes.back().size(0);
  }
  const double num_boxes = std::max<double>(1.0, static_cast<double>(total_gt));

  std::map<std::string, at::Tensor> losses;
  const int64_t num_dec = static_cast<int64_t>(out.logits.size());
  std::vector<PositivePairs> pairs;
  for (int64_t l = num_dec - 1; l >= 0; --l) {
    // DETA: one stage-2 assignment on the decoder's input boxes for every layer
    if (pairs.empty() || train_.assigner == DetrAssignment::kHungarian) {
      pairs = assign_decoder(out, l, gt_boxes, gt_labels);
    }
    const std::string suffix = l == num_dec - 1 ? "" : "_" + std::to_string(l);
    for (auto& [name, v] :
         set_losses(out.logits[l], out.boxes[l], pairs, gt_boxes, gt_labels, num_boxes)) {
      if (name == "num_pos" && !suffix.empty()) continue;
      losses[name + suffix] = v;
    }
  }
  const std::vector<PositivePairs> enc_pairs = assign_encoder(out, gt_boxes);
  for (auto& [name, v] :
       set_losses(out.enc_logits, out.enc_boxes, enc_pairs, gt_boxes, zero_labels, num_boxes)) {
    losses[name + "_enc"] = v;
  }
  return losses;
}

std::vector<Detections> DeformableDETR::predict(const Batch& batch) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(batch.images.defined(), "DeformableDETR::predict: batch.images is undefined");
  TORCH_CHECK(batch.size() == batch.images.size(0),
              "DeformableDETR::predict: ", batch.images.size(0), " images but ", batch.size(),
              " metas");
  const DeformableDETROutputs out = forward_outputs(batch.images, padding_mask_of(batch));
  const at::Tensor prob = out.logits.back().sigmoid().to(at::kCPU);
  const at::Tensor boxes = out.boxes.back().to(at::kCPU);
  const auto padded = padded_size(batch);
  std::vector<Detections> results;
  for (int64_t i = 0; i < batch.size(); ++i) {
    const ImageMeta& meta = batch.metas[static_cast<size_t>(i)];
    const Candidates cand = select_candidates(prob[i], test_.score_thr, test_.pre_nms_top_k);
    const at::Tensor xyxy =
        box_cxcywh_to_xyxy(boxes[i].index_select(0, cand.locations)) * image_scale(meta, padded);
    results.push_back(finalize_detections(xyxy, cand.scores, cand.labels, meta, padded, test_));
  }
  return results;
}

namespace {

DetrAssignment parse_assignment(const std::string& name, const std::string& where) {
  if (name == "hungarian") return DetrAssignment::kHungarian;
  if (name == "deta") return DetrAssignment::kDeta;
  throw Error(where + ": expected 'hungarian' or 'deta', got '" + name + "'");
}

std::optional<int64_t> read_max_k(const Config& cfg, const std::optional<int64_t>& fallback) {
  if (!cfg.has("max_k")) return fallback;
  const Config k = cfg["max_k"];
  if (k.node().IsNull()) return std::nullopt;
  const auto v = k.as<int64_t>();
  SETDET_CHECK(v > 0, k.where(), ": expected a positive integer or null, got ", v);
  return v;
}

void read_assigner(const Config& model, DetrAssignment default_assigner,
                   DeformableDETRTrainConfig& t) {
  t.assigner = default_assigner;
  if (!model.has("assigner")) return;
  const Config a = model["assigner"];
  if (!a.is_map()) {
    t.assigner = parse_assignment(a.as<std::string>(), a.where());
    return;
  }
  SETDET_CHECK(a.has("type"), a.where(), ": needs a 'type' key (hungarian or deta)");
  t.assigner = parse_assignment(a.get<std::string>("type"), a["type"].where());
  if (t.assigner == DetrAssignment::kHungarian) {
    t.matcher = hungarian_matcher_options(a, t.matcher);
    return;
  }
  a.check_keys({"type", "max_k", "stage1", "stage2"});
  const std::optional<int64_t> k = read_max_k(a, t.stage1.max_k);
  t.stage1.max_k = k;
  t.stage2.max_k = k;
  if (a.has("stage1")) t.stage1 = deta_assigner_options(a["stage1"], t.stage1);
  if (a.has("stage2")) t.stage2 = deta_assigner_options(a["stage2"], t.stage2);
}

}  // namespace

std::shared_ptr<DeformableDETR> build_deformable_detr(const Config& cfg,
                                                      DetrAssignment default_assigner) {
  cfg.check_keys({"type", "num_classes", "num_queries", "backbone", "num_feature_levels",
                  "transformer", "assigner", "query_selection", "loss", "test_cfg",
                  "channels_last"});
  DeformableDETRParts p;
  p.num_classes = cfg.get<int64_t>("num_classes");
  SETDET_CHECK(p.num_classes > 0, cfg["num_classes"].where(), ": expected > 0, got ",
               p.num_classes);
  p.num_queries = cfg.get<int64_t>("num_queries", p.num_queries);
  SETDET_CHECK(p.num_queries > 0, cfg["num_queries"].where(), ": expected > 0, got ",
               p.num_queries);
  p.backbone = BackboneRegistry().build(cfg["backbone"]);
  const int64_t nb = static_cast<int64_t>(p.backbone->output_shape().size());
  auto& to = p.transformer;
  to.num_feature_levels(cfg.get<int64_t>("num_feature_levels", nb));
  SETDET_CHECK(to.num_feature_levels() >= nb, cfg.where(),
               ".num_feature_levels: expected >= the backbone's ", nb, " levels, got ",
               to.num_feature_levels());
  if (cfg.has("transformer")) {
    const Config t = cfg["transformer"];
    t.check_keys({"d_model", "nhead", "num_encoder_layers", "num_decoder_layers", "dim_feedforward",
                  "dropout", "enc_n_points", "dec_n_points"});
    to.d_model(t.get<int64_t>("d_model", to.d_model()))
        .nhead(t.get<int64_t>("nhead", to.nhead()))
        .num_encoder_layers(t.get<int64_t>("num_encoder_layers", to.num_encoder_layers()))
        .num_decoder_layers(t.get<int64_t>("num_decoder_layers", to.num_decoder_layers()))
        .dim_feedforward(t.get<int64_t>("dim_feedforward", to.dim_feedforward()))
        .dropout(t.get<double>("dropout", to.dropout()))
        .enc_n_points(t.get<int64_t>("enc_n_points", to.enc_n_points()))
        .dec_n_points(t.get<int64_t>("dec_n_points", to.dec_n_points()));
    SETDET_CHECK(to.d_model() > 0 && to.d_model() % 32 == 0, t.where(),
                 ".d_model: expected a positive multiple of 32 (GroupNorm(32) projections), got ",
                 to.d_model());
    SETDET_CHECK(to.nhead() > 0 && to.d_model() % to.nhead() == 0, t.where(),
                 ".nhead: expected a positive divisor of d_model ", to.d_model(), ", got ",
                 to.nhead());
    SETDET_CHECK(to.num_encoder_layers() >= 0, t.where(),
                 ".num_encoder_layers: expected >= 0, got ", to.num_encoder_layers());
    SETDET_CHECK(to.num_decoder_layers() >= 1, t.where(),
                 ".num_decoder_layers: expected >= 1, got ", to.num_decoder_layers());
    SETDET_CHECK(to.dim_feedforward() > 0, t.where(), ".dim_feedforward: expected > 0, got ",
                 to.dim_feedforward());
    SETDET_CHECK(to.dropout() >= 0 && to.dropout() < 1, t.where(),
                 ".dropout: expected a value in [0, 1), got ", to.dropout());
    SETDET_CHECK(to.enc_n_points() > 0 && to.dec_n_points() > 0, t.where(),
                 ": enc_n_points and dec_n_points must be positive");
  }

  read_assigner(cfg, default_assigner, p.train);
  const bool deta = p.train.assigner == DetrAssignment::kDeta;
  if (cfg.has("loss")) {
    const Config l = cfg["loss"];
    l.check_keys({"cls_weight", "bbox_weight", "giou_weight", "focal_alpha", "focal_gamma"});
    auto& t = p.train;
    t.cls_weight = l.get<double>("cls_weight", t.cls_weight);
    t.bbox_weight = l.get<double>("bbox_weight", t.bbox_weight);
    t.giou_weight = l.get<double>("giou_weight", t.giou_weight);
    t.focal_alpha = l.get<double>("focal_alpha", t.focal_alpha);
    t.focal_gamma = l.get<double>("focal_gamma", t.focal_gamma);
    for (const char* key : {"cls_weight", "bbox_weight", "giou_weight", "focal_gamma"}) {
      const double v = l.get<double>(key, 0.0);
      SETDET_CHECK(std::isfinite(v) && v >= 0, l.where(), ".", key, ": expected >= 0, got ", v);
    }
    t.matcher.focal_alpha = t.focal_alpha;
    t.matcher.focal_gamma = t.focal_gamma;
  }

  p.selection.deta = deta;
  if (cfg.has("query_selection")) {
    const Config q = cfg["query_selection"];
    std::string type;
    if (q.is_map()) {
      q.check_keys({"type", "pre_nms_top_k", "nms_iou_threshold"});
      type = q.get<std::string>("type", deta ? "deta" : "topk");
      p.selection.options.pre_nms_top_k =
          q.get<int64_t>("pre_nms_top_k", p.selection.options.pre_nms_top_k);
      p.selection.options.nms_iou_threshold =
          q.get<double>("nms_iou_threshold", p.selection.options.nms_iou_threshold);
      SETDET_CHECK(p.selection.options.pre_nms_top_k > 0, q.where(),
                   ".pre_nms_top_k: expected > 0, got ", p.selection.options.pre_nms_top_k);
      const double thr = p.selection.options.nms_iou_threshold;
      SETDET_CHECK(thr >= 0 && thr <= 1, q.where(),
                   ".nms_iou_threshold: expected a value in [0, 1], got ", thr);
    } else {
      type = q.as<std::string>();
    }
    SETDET_CHECK(type == "deta" || type == "topk", q.where(),
                 ": expected query selection 'topk' or 'deta', got '", type, "'");
    p.selection.deta = type == "deta";
  }

  PostProcessConfig defaults;
  defaults.score_thr = 0.0;
  defaults.max_per_img = 100;
  defaults.clip = false;
  if (deta) {
    defaults.pre_nms_top_k = 10000;
    defaults.nms.type = "nms";
    defaults.nms.iou_threshold = 0.7;
  } else {
    defaults.pre_nms_top_k = 100;
    defaults.nms.type = "none";
  }
  p.test =
      cfg.has("test_cfg") ? PostProcessConfig::from_config(cfg["test_cfg"], defaults) : defaults;
  p.channels_last = cfg.get<bool>("channels_last", true);
  return std::make_shared<DeformableDETR>(std::move(p));
}

SETDET_REGISTER(DetectorRegistry, "DeformableDETR",
                [](const Config& cfg) -> std::shared_ptr<DetectorModel> {
                  return build_deformable_detr(cfg, DetrAssignment::kHungarian);
                });
SETDET_REGISTER(DetectorRegistry, "DETA", [](const Config& cfg) -> std::shared_ptr<DetectorModel> {
  return build_deformable_detr(cfg, DetrAssignment::kDeta);
});

}  // namespace setdet
