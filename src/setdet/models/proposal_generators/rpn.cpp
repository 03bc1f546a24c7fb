#include "setdet/models/proposal_generators/rpn.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>

#include "setdet/core/dedup/nms.h"
#include "setdet/distributed/process_group.h"
#include "setdet/models/post_processing.h"

namespace setdet {
namespace {

at::Tensor long_tensor(const std::vector<int64_t>& v) {
  return at::tensor(v.empty() ? std::vector<int64_t>{0} : v, at::kLong)
      .narrow(0, 0, static_cast<int64_t>(v.size()));
}

}  // namespace

RegionProposalNetworkImpl::RegionProposalNetworkImpl(
    std::shared_ptr<RPNHeadImpl> head, AnchorGenerator anchors,
    std::shared_ptr<AnchorAssigner> assigner, std::shared_ptr<Sampler> sampler,
    std::shared_ptr<Loss> loss_cls, std::shared_ptr<Loss> loss_bbox, RPNOptions options)
    : head_(std::move(head)),
      anchors_(std::move(anchors)),
      assigner_(std::move(assigner)),
      sampler_(std::move(sampler)),
      loss_cls_(std::move(loss_cls)),
      loss_bbox_(std::move(loss_bbox)),
      options_(options) {
  TORCH_CHECK(head_ && assigner_ && sampler_ && loss_cls_ && loss_bbox_,
              "RPN: head, assigner, sampler and both losses are required");
  TORCH_CHECK(head_->num_anchors() == anchors_.num_anchors(), "RPN: the head predicts ",
              head_->num_anchors(), " anchors per location, the anchor generator makes ",
              anchors_.num_anchors());
  TORCH_CHECK(static_cast<int64_t>(head_->strides().size()) == anchors_.num_levels(),
              "RPN: the neck gives ", head_->strides().size(),
              " levels, the anchor generator has sizes for ", anchors_.num_levels());
  register_module("head", head_);
}

RPNOutput RegionProposalNetworkImpl::forward(const std::vector<at::Tensor>& features,
                                             const Batch& batch, bool with_losses) {
  const DenseHeadOutputs out = to_float32(head_->forward(features));
  const auto& obj_l = out.at("objectness");
  const auto& reg_l = out.at("bbox_deltas");
  const int64_t num_images = obj_l.front().size(0);
  TORCH_CHECK(batch.size() == num_images, "RPN: ", num_images, " images but ", batch.size(),
              " metas");
  const auto padded = padded_size(batch);
  std::vector<std::array<int64_t, 2>> grid;
  for (const auto& m : obj_l) grid.push_back({m.size(2), m.size(3)});
  std::vector<at::Tensor> level_anchors =
      anchors_.grid_anchors(grid, {padded[0], padded[1]}, head_->strides());
  std::vector<int64_t> per_level;
  for (auto& a : level_anchors) {
    a = a.to(obj_l.front().device());
    per_level.push_back(a.size(0));
  }
  const at::Tensor anchors = at::cat(level_anchors, 0);                      // [N, 4]
  const at::Tensor objectness = flatten_anchor_levels(obj_l, 1).squeeze(2);  // [B, N]
  const at::Tensor deltas = flatten_anchor_levels(reg_l, 4);                 // [B, N, 4]

  RPNOutput result;
  if (with_losses) result.losses = losses(objectness, deltas, anchors, batch);

  const ProposalConfig& pc = is_training() ? options_.train : options_.test;
  torch::NoGradGuard no_grad;
  // Per level the pre_nms_top_n highest objectness logits (torchvision's _get_top_n_idx).
  std::vector<at::Tensor> top_idx, top_level;
  int64_t offset = 0;
  for (size_t l = 0; l < per_level.size(); ++l) {
    const at::Tensor ob = objectness.detach().narrow(1, offset, per_level[l]);
    const int64_t k =
        pc.pre_nms_top_n > 0 ? std::min(pc.pre_nms_top_n, per_level[l]) : per_level[l];
    top_idx.push_back(std::get<1>(ob.topk(k, 1)) + offset);
    top_level.push_back(at::full({k}, static_cast<int64_t>(l), top_idx.back().options()));
    offset += per_level[l];
  }
  const at::Tensor idx = at::cat(top_idx, 1);       // [B, K]
  const at::Tensor levels = at::cat(top_level, 0);  // [K]
  for (int64_t i = 0; i < num_images; ++i) {
    const at::Tensor sel = idx[i];
    const at::Tensor boxes_i =
        coder_.decode(deltas[i].detach().index_select(0, sel), anchors.index_select(0, sel));
    const auto hw = input_size(batch.metas[i], padded);
    at::Tensor boxes = clip_boxes(boxes_i, hw[0], hw[1]).to(at::kCPU).contiguous();
    at::Tensor scores = objectness[i].detach().index_select(0, sel).sigmoid().to(at::kCPU);
    at::Tensor lvl = levels.to(at::kCPU);
    const at::Tensor ws = boxes.select(1, 2) - boxes.select(1, 0);
    const at::Tensor hs = boxes.select(1, 3) - boxes.select(1, 1);
    const at::Tensor keep =
        ((ws >= pc.min_size) & (hs >= pc.min_size) & (scores >= pc.score_thr)).nonzero().squeeze(1);
    boxes = boxes.index_select(0, keep).contiguous();
    scores = scores.index_select(0, keep).contiguous();
    lvl = lvl.index_select(0, keep).contiguous();
    NmsOptions nms_opts;
    nms_opts.iou_threshold = pc.nms_thr;
    std::vector<int64_t> kept =
        batched_nms(boxes.data_ptr<float>(), scores.data_ptr<float>(), lvl.data_ptr<int64_t>(),
                    static_cast<size_t>(boxes.size(0)), nms_opts);
    if (pc.post_nms_top_n > 0 && static_cast<int64_t>(kept.size()) > pc.post_nms_top_n) {
      kept.resize(static_cast<size_t>(pc.post_nms_top_n));
    }
    const at::Tensor k = long_tensor(kept);
    result.proposals.push_back(boxes.index_select(0, k).to(obj_l.front().device()));
    result.scores.push_back(scores.index_select(0, k).to(obj_l.front().device()));
  }
  return result;
}

std::map<std::string, at::Tensor> RegionProposalNetworkImpl::losses(const at::Tensor& objectness,
                                                                    const at::Tensor& deltas,
                                                                    const at::Tensor& anchors,
                                                                    const Batch& batch) {
  const int64_t num_images = objectness.size(0);
  TORCH_CHECK(static_cast<int64_t>(batch.boxes.size()) == num_images, "RPN::losses: ", num_images,
              " images but ", batch.boxes.size(), " box tensors");
  const auto padded = padded_size(batch);
  std::vector<at::Tensor> cls_pred, cls_target, box_pred, box_target;
  int64_t num_sampled = 0;
  for (int64_t i = 0; i < num_images; ++i) {
    const at::Tensor gt = batch.boxes[i].to(anchors.device(), at::kFloat);
    at::Tensor matched = assigner_->assign(anchors, gt);
    if (options_.allowed_border >= 0) {
      const auto hw = input_size(batch.metas[i], padded);
      const double b = options_.allowed_border;
      const at::Tensor inside = (anchors.select(1, 0) >= -b) & (anchors.select(1, 1) >= -b) &
                                (anchors.select(1, 2) < hw[1] + b) &
                                (anchors.select(1, 3) < hw[0] + b);
      matched = at::where(inside, matched, at::full_like(matched, kAnchorIgnored));
    }
    const SampledCandidates s = sampler_->sample(matched, {});
    const at::Tensor sampled = at::cat({s.positives, s.negatives});
    num_sampled += sampled.numel();
    cls_pred.push_back(objectness[i].index_select(0, sampled));
    cls_target.push_back(at::cat({at::ones({s.positives.numel()}, objectness.options()),
                                  at::zeros({s.negatives.numel()}, objectness.options())}));
    if (s.positives.numel() > 0) {
      box_pred.push_back(deltas[i].index_select(0, s.positives));
      box_target.push_back(coder_.encode(anchors.index_select(0, s.positives),
                                         gt.index_select(0, matched.index_select(0, s.positives))));
    }
  }
  // the batch's sampled anchors, over every data-parallel process
  const double norm = std::max(dist::reduce_normaliser(static_cast<double>(num_sampled)), 1.0);
  std::map<std::string, at::Tensor> out;
  out["loss_rpn_cls"] = (*loss_cls_)(at::cat(cls_pred), at::cat(cls_target), {}, norm);
  out["loss_rpn_bbox"] = box_pred.empty()
                             ? deltas.sum() * 0.0
                             : (*loss_bbox_)(at::cat(box_pred), at::cat(box_target), {}, norm);
  return out;
}

namespace {

ProposalConfig proposal_config(const Config& parent, const std::string& key,
                               ProposalConfig defaults) {
  if (!parent.has(key)) return defaults;
  const Config c = parent[key];
  c.check_keys({"pre_nms_top_n", "post_nms_top_n", "nms_thr", "min_size", "score_thr"});
  defaults.pre_nms_top_n = c.get<int64_t>("pre_nms_top_n", defaults.pre_nms_top_n);
  defaults.post_nms_top_n = c.get<int64_t>("post_nms_top_n", defaults.post_nms_top_n);
  defaults.nms_thr = c.get<double>("nms_thr", defaults.nms_thr);
  defaults.min_size = c.get<double>("min_size", defaults.min_size);
  defaults.score_thr = c.get<double>("score_thr", defaults.score_thr);
  SETDET_CHECK(std::isfinite(defaults.nms_thr) && defaults.nms_thr >= 0 && defaults.nms_thr <= 1,
               c.where(), ".nms_thr: expected a value in [0, 1], got ", defaults.nms_thr);
  SETDET_CHECK(std::isfinite(defaults.min_size) && defaults.min_size >= 0, c.where(),
               ".min_size: expected a finite value >= 0, got ", defaults.min_size);
  SETDET_CHECK(std::isfinite(defaults.score_thr), c.where(),
               ".score_thr: expected a finite number, got ", defaults.score_thr);
  return defaults;
}

}  // namespace

RegionProposalNetwork build_rpn(const Config& cfg, const std::vector<ShapeSpec>& in_shapes) {
  cfg.check_keys({"anchor_generator", "head", "assigner", "sampler", "loss_cls", "loss_bbox",
                  "allowed_border", "train_cfg", "test_cfg"});
  AnchorGeneratorOptions anchor_opts = anchor_generator_options_from_config(
      cfg.has("anchor_generator") ? cfg["anchor_generator"]
                                  : Config::parse("{sizes: [[32], [64], [128], [256], [512]]}",
                                                  cfg.where() + ".anchor_generator (default)"));
  SETDET_CHECK(anchor_opts.sizes().size() == in_shapes.size(),
               cfg.has("anchor_generator") ? cfg["anchor_generator"].where() : cfg.where(),
               ": anchor sizes for ", anchor_opts.sizes().size(), " levels but the neck gives ",
               in_shapes.size());
  AnchorGenerator anchors(anchor_opts);
  auto head_factory = build_or_default(
      DenseHeadRegistry(), cfg, "head",
      "{type: RPNHead, num_anchors: " + std::to_string(anchors.num_anchors()) + "}");
  auto head = std::dynamic_pointer_cast<RPNHeadImpl>(head_factory(in_shapes, 1));
  SETDET_CHECK(head != nullptr, cfg.where(), ".head: the RPN needs an RPNHead");
  SETDET_CHECK(head->num_anchors() == anchors.num_anchors(), cfg.where(),
               ".head.num_anchors: the anchor generator makes ", anchors.num_anchors(),
               " anchors per location, the head predicts ", head->num_anchors());
  auto assigner = build_or_default(AnchorAssignerRegistry(), cfg, "assigner",
                                   "{type: MaxIoUAssigner, pos_iou_thr: 0.7, neg_iou_thr: 0.3}");
  auto sampler = build_or_default(SamplerRegistry(), cfg, "sampler",
                                  "{type: RandomSampler, num: 256, pos_fraction: 0.5, "
                                  "add_gt_as_proposals: false}");
  SETDET_CHECK(!sampler->needs_loss(), cfg.where(), ".sampler: the RPN samples without losses (",
               "use RandomSampler)");
  RPNOptions o;
  o.allowed_border = cfg.get<double>("allowed_border", -1.0);
  SETDET_CHECK(std::isfinite(o.allowed_border), cfg.where(),
               ".allowed_border: expected a finite number, got ", o.allowed_border);
  ProposalConfig train;
  train.pre_nms_top_n = 2000;
  train.post_nms_top_n = 2000;
  o.train = proposal_config(cfg, "train_cfg", train);
  o.test = proposal_config(cfg, "test_cfg", ProposalConfig{});
  return RegionProposalNetwork(
      head, anchors, assigner, sampler,
      build_or_default(LossRegistry(), cfg, "loss_cls", "{type: BCEWithLogitsLoss}"),
      build_or_default(LossRegistry(), cfg, "loss_bbox",
                       "{type: SmoothL1Loss, beta: 0.1111111111111111}"),
      o);
}

}  // namespace setdet
