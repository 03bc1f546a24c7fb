#include "setdet/models/roi_heads/standard_roi_head.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "setdet/distributed/process_group.h"

namespace setdet {
namespace {

std::array<int64_t, 2> largest_input(const Batch& batch, const std::array<int64_t, 2>& padded) {
  std::array<int64_t, 2> hw{0, 0};
  for (const auto& m : batch.metas) {
    const auto s = input_size(m, padded);
    hw[0] = std::max<int64_t>(hw[0], static_cast<int64_t>(s[0]));
    hw[1] = std::max<int64_t>(hw[1], static_cast<int64_t>(s[1]));
  }
  return hw;
}

// The duplicate-removal loss's term count over the batch of every data-parallel process.
double dedup_normaliser(int64_t terms) {
  return std::max(dist::reduce_normaliser(static_cast<double>(terms)), 1.0);
}

}  // namespace

StandardRoIHeadImpl::StandardRoIHeadImpl(RoIHeadParts parts) : parts_(std::move(parts)) {
  auto& p = parts_;
  TORCH_CHECK(p.num_classes > 0, "StandardRoIHead: num_classes must be positive, got ",
              p.num_classes);
  TORCH_CHECK(p.extractor && !p.box_head.is_empty() && !p.predictor.is_empty() && p.assigner &&
                  p.sampler && p.loss_cls && p.loss_bbox,
              "StandardRoIHead: extractor, box head, predictor, assigner, sampler and losses are "
              "required");
  TORCH_CHECK(p.predictor->num_classes() == p.num_classes, "StandardRoIHead: the predictor has ",
              p.predictor->num_classes(), " classes, the head ", p.num_classes);
  register_module("box_head", p.box_head);
  register_module("box_predictor", p.predictor);
  if (!p.dedup.is_empty()) {
    TORCH_CHECK(p.dedup->options().feature_dim() == p.box_head->options().fc_dim(),
                "StandardRoIHead: the duplicate-removal network reads ",
                p.dedup->options().feature_dim(), " features, the box head gives ",
                p.box_head->options().fc_dim());
    register_module("dedup_head", p.dedup);
  }
}

StandardRoIHeadImpl::HeadOutput StandardRoIHeadImpl::run_head(
    const std::vector<at::Tensor>& features, const std::vector<at::Tensor>& rois,
    const std::vector<int64_t>& num_keys, const Batch& batch) {
  const auto padded = padded_size(batch);
  std::vector<std::pair<int64_t, int64_t>> groups;
  for (size_t i = 0; i < rois.size(); ++i) groups.emplace_back(rois[i].size(0), num_keys[i]);
  const at::Tensor pooled = parts_.extractor->forward(features, rois, largest_input(batch, padded));
  const at::Tensor boxes = at::cat(rois, 0);
  HeadOutput out;
  out.features = parts_.box_head->forward(pooled, boxes, groups);
  const auto pred = parts_.predictor->forward(out.features);
  out.class_logits = pred.class_logits.to(at::kFloat);
  out.deltas = pred.deltas.to(at::kFloat);
  return out;
}

at::Tensor StandardRoIHeadImpl::class_boxes(const HeadOutput& out, int64_t start, int64_t count,
                                            const at::Tensor& rois, const ImageMeta& meta,
                                            const std::array<int64_t, 2>& padded) const {
  const int64_t c = parts_.num_classes;
  const at::Tensor d = out.deltas.narrow(0, start, count).detach();  // [K, C or 1, 4]
  const int64_t per = d.size(1);
  const at::Tensor anchors =
      rois.to(at::kFloat).unsqueeze(1).expand({count, per, 4}).reshape({-1, 4});
  const at::Tensor decoded = parts_.coder.decode(d.reshape({-1, 4}), anchors);
  const auto hw = input_size(meta, padded);
  return clip_boxes(decoded, hw[0], hw[1]).reshape({count, per, 4}).expand({count, c, 4});
}

std::map<std::string, at::Tensor> StandardRoIHeadImpl::losses(
    const std::vector<at::Tensor>& features, const std::vector<at::Tensor>& proposals,
    const Batch& batch) {
  const int64_t num_images = batch.size();
  TORCH_CHECK(static_cast<int64_t>(proposals.size()) == num_images &&
                  static_cast<int64_t>(batch.boxes.size()) == num_images &&
                  static_cast<int64_t>(batch.labels.size()) == num_images,
              "StandardRoIHead::losses: ", num_images, " images but ", proposals.size(),
              " proposal sets, ", batch.boxes.size(), " box and ", batch.labels.size(),
              " label tensors");
  const int64_t c = parts_.num_classes;
  const bool ohem = parts_.sampler->needs_loss();
  std::vector<at::Tensor> rois(num_images), matched(num_images), labels(num_images);
  std::vector<int64_t> keys(num_images);
  for (int64_t i = 0; i < num_images; ++i) {
    const at::Tensor props = proposals[i].detach().to(at::kFloat);
    const at::Tensor gt = batch.boxes[i].to(props.device(), at::kFloat);
    const at::Tensor gt_labels = batch.labels[i].to(props.device(), at::kLong);
    TORCH_CHECK(gt_labels.numel() == gt.size(0), "StandardRoIHead::losses: image ", i, " has ",
                gt.size(0), " boxes but ", gt_labels.numel(), " labels");
    const at::Tensor cand = parts_.sampler->add_gt_as_proposals() ? at::cat({props, gt}) : props;
    const at::Tensor m = parts_.assigner->assign(cand, gt);
    at::Tensor sel;
    if (ohem) {
      sel = (m != kAnchorIgnored).nonzero().squeeze(1);
    } else {
      const SampledCandidates s = parts_.sampler->sample(m, {});
      // ascending: the proposals first, then the GT boxes (queries only for relation modules)
      sel = std::get<0>(at::cat({s.positives, s.negatives}).sort());
    }
    rois[i] = cand.index_select(0, sel);
    matched[i] = m.index_select(0, sel);
    keys[i] = (sel < props.size(0)).sum().item<int64_t>();
    labels[i] = gt.size(0) == 0
                    ? at::full_like(matched[i], c)
                    : at::where(matched[i] >= 0, gt_labels.index_select(0, matched[i].clamp_min(0)),
                                at::full_like(matched[i], c));
  }
  const HeadOutput out = run_head(features, rois, keys, batch);
  const at::Tensor all_labels = at::cat(labels);
  const at::Tensor all_rois = at::cat(rois);
  const at::Tensor all_matched = at::cat(matched);

  // Regression targets and predictions of the positives (class-specific: the GT class's row).
  std::vector<at::Tensor> gt_of_roi;
  for (int64_t i = 0; i < num_images; ++i) {
    const at::Tensor gt = batch.boxes[i].to(all_rois.device(), at::kFloat);
    gt_of_roi.push_back(gt.size(0) == 0 ? at::zeros({rois[i].size(0), 4}, gt.options())
                                        : gt.index_select(0, matched[i].clamp_min(0)));
  }
  const at::Tensor pos = (all_matched >= 0).nonzero().squeeze(1);
  const at::Tensor row =
      parts_.predictor->class_agnostic() ? at::zeros_like(pos) : all_labels.index_select(0, pos);
  const at::Tensor pos_pred = out.deltas.index_select(0, pos)
                                  .gather(1, row.view({-1, 1, 1}).expand({pos.numel(), 1, 4}))
                                  .squeeze(1);
  const at::Tensor pos_target =
      parts_.coder.encode(all_rois.index_select(0, pos), at::cat(gt_of_roi).index_select(0, pos));

  at::Tensor chosen = at::arange(all_labels.numel(), all_labels.options());
  if (ohem) {
    at::Tensor hardness;
    {
      torch::NoGradGuard no_grad;
      // per-RoI loss: the weighted classification term plus the box term of positives
      const auto per_roi = [](const Loss& loss, const at::Tensor& pred, const at::Tensor& target) {
        const at::Tensor e = loss.elementwise(pred, target);
        return (e.dim() > 1 ? e.flatten(1).sum(1) : e) * loss.loss_weight();
      };
      hardness = per_roi(*parts_.loss_cls, out.class_logits, all_labels);
      if (pos.numel() > 0)
        hardness.index_add_(0, pos, per_roi(*parts_.loss_bbox, pos_pred, pos_target));
    }
    std::vector<at::Tensor> picked;
    int64_t offset = 0;
    for (int64_t i = 0; i < num_images; ++i) {
      const int64_t n = rois[i].size(0);
      const SampledCandidates s = parts_.sampler->sample(matched[i], [&](const at::Tensor& idx) {
        return hardness.narrow(0, offset, n).index_select(0, idx);
      });
      picked.push_back(at::cat({s.positives, s.negatives}) + offset);
      offset += n;
    }
    chosen = std::get<0>(at::cat(picked).sort());
  }
  // the batch's chosen RoIs, over every data-parallel process
  const double total = std::max(dist::reduce_normaliser(static_cast<double>(chosen.numel())), 1.0);
  std::map<std::string, at::Tensor> result;
  result["loss_cls"] = (*parts_.loss_cls)(out.class_logits.index_select(0, chosen),
                                          all_labels.index_select(0, chosen), {}, total);
  // positives among the chosen RoIs
  const at::Tensor chosen_mask =
      at::zeros({all_labels.numel()}, all_labels.options().dtype(at::kBool))
          .index_fill_(0, chosen, true);
  const at::Tensor pos_chosen = chosen_mask.index_select(0, pos).nonzero().squeeze(1);
  result["loss_bbox"] =
      pos_chosen.numel() == 0
          ? out.deltas.sum() * 0.0
          : (*parts_.loss_bbox)(pos_pred.index_select(0, pos_chosen),
                                pos_target.index_select(0, pos_chosen), {}, total);
  result["num_rois"] = at::scalar_tensor(static_cast<double>(chosen.numel()));
  result["num_pos"] = at::scalar_tensor(static_cast<double>(pos_chosen.numel()));
  if (has_dedup() && !parts_.dedup->options().frozen_detector()) {
    const auto [sum, terms] = dedup_loss_sum(out, rois, keys, batch);
    result["loss_dedup"] = sum * (parts_.dedup_loss_weight / dedup_normaliser(terms));
  }
  return result;
}

std::map<std::string, at::Tensor> StandardRoIHeadImpl::dedup_losses(
    const std::vector<at::Tensor>& features, const std::vector<at::Tensor>& proposals,
    const Batch& batch) {
  TORCH_CHECK(has_dedup(), "StandardRoIHead: no duplicate-removal network (roi_head.dedup_head)");
  HeadOutput out;
  std::vector<at::Tensor> rois;
  std::vector<int64_t> keys;
  for (const auto& p : proposals) {
    rois.push_back(p.detach().to(at::kFloat));
    keys.push_back(p.size(0));
  }
  {
    torch::NoGradGuard no_grad;
    out = run_head(features, rois, keys, batch);
  }
  const auto [sum, terms] = dedup_loss_sum(out, rois, keys, batch);
  std::map<std::string, at::Tensor> result;
  result["loss_dedup"] = sum * (parts_.dedup_loss_weight / dedup_normaliser(terms));
  return result;
}

std::pair<at::Tensor, int64_t> StandardRoIHeadImpl::dedup_loss_sum(
    const HeadOutput& out, const std::vector<at::Tensor>& rois,
    const std::vector<int64_t>& num_keys, const Batch& batch) {
  auto& net = *parts_.dedup;
  const auto& o = net.options();
  const int64_t c = parts_.num_classes;
  const auto padded = padded_size(batch);
  at::Tensor sum = out.class_logits.sum() * 0.0;
  int64_t terms = 0;
  int64_t start = 0;
  // Every (image, class) set of top-n detections; sets of the same size go through the network
  // as one batch (one relation module call instead of one per image and class).
  struct Set {
    at::Tensor boxes, log_s0, features, targets;
  };
  std::map<int64_t, std::vector<Set>> by_size;
  for (size_t i = 0; i < rois.size(); ++i) {
    const int64_t k = num_keys[i];  // the proposals of image i (its GT boxes follow)
    if (k > 0) {
      const at::Tensor log_s0 =
          at::log_softmax(out.class_logits.narrow(0, start, k), 1).narrow(1, 0, c);
      const at::Tensor feats = out.features.narrow(0, start, k);
      const at::Tensor boxes =
          class_boxes(out, start, k, rois[i].narrow(0, 0, k), batch.metas[i], padded);
      const at::Tensor gt = batch.boxes[i].to(boxes.device(), at::kFloat);
      const at::Tensor gt_labels = batch.labels[i].to(boxes.device(), at::kLong);
      const at::Tensor best = std::get<0>(log_s0.detach().max(0));  // [C]
      for (int64_t cls = 0; cls < c; ++cls) {
        const at::Tensor gt_c = gt.index_select(0, (gt_labels == cls).nonzero().squeeze(1));
        if (gt_c.size(0) == 0 && best[cls].item<double>() < std::log(o.class_score_thr())) continue;
        const at::Tensor order =
            std::get<1>(log_s0.select(1, cls).detach().topk(std::min(o.top_n(), k)));
        Set set;
        set.boxes = boxes.select(1, cls).index_select(0, order);
        set.log_s0 = log_s0.select(1, cls).index_select(0, order);
        set.features = feats.index_select(0, order);
        if (o.frozen_detector()) {
          set.log_s0 = set.log_s0.detach();
          set.features = set.features.detach();
        }
        set.targets = net.targets(set.boxes, gt_c);
        by_size[order.numel()].push_back(std::move(set));
      }
    }
    start += rois[i].size(0);
  }
  for (const auto& [n, sets] : by_size) {
    std::vector<at::Tensor> boxes, log_s0, features, targets;
    for (const auto& s : sets) {
      boxes.push_back(s.boxes);
      log_s0.push_back(s.log_s0);
      features.push_back(s.features);
      targets.push_back(s.targets);
    }
    const at::Tensor logits = net.forward(at::stack(boxes), at::stack(features)).to(at::kFloat);
    sum = sum + net.loss_sum(at::stack(log_s0), logits, at::stack(targets));
    terms += logits.numel();
  }
  return {sum, terms};
}

Detections StandardRoIHeadImpl::learned_detections(const HeadOutput& out, int64_t start,
                                                   int64_t count, const at::Tensor& rois,
                                                   const ImageMeta& meta,
                                                   const std::array<int64_t, 2>& padded) {
  TORCH_CHECK(has_dedup(), "duplicate removal 'learned': this detector has no duplicate-removal ",
              "network (model.roi_head.dedup_head)");
  auto& net = *parts_.dedup;
  const auto& o = net.options();
  const int64_t c = parts_.num_classes;
  std::vector<at::Tensor> boxes_v, scores_v, labels_v;
  if (count > 0) {
    const at::Tensor log_s0 =
        at::log_softmax(out.class_logits.narrow(0, start, count), 1).narrow(1, 0, c);
    const at::Tensor feats = out.features.narrow(0, start, count);
    const at::Tensor boxes = class_boxes(out, start, count, rois, meta, padded);
    const at::Tensor best = std::get<0>(log_s0.max(0));
    for (int64_t cls = 0; cls < c; ++cls) {
      if (best[cls].item<double>() < std::log(o.class_score_thr())) continue;
      const at::Tensor order = std::get<1>(log_s0.select(1, cls).topk(std::min(o.top_n(), count)));
      const at::Tensor b = boxes.select(1, cls).index_select(0, order);
      const at::Tensor logits = net.forward(b, feats.index_select(0, order)).to(at::kFloat);
      const at::Tensor score = DuplicateRemovalNetImpl::log_final_score(
                                   log_s0.select(1, cls).index_select(0, order), logits)
                                   .exp();
      const at::Tensor keep = (score > o.score_thr()).nonzero().squeeze(1);
      boxes_v.push_back(b.index_select(0, keep));
      scores_v.push_back(score.index_select(0, keep));
      labels_v.push_back(at::full({keep.numel()}, cls, keep.options()));
    }
  }
  if (boxes_v.empty()) {
    boxes_v.push_back(at::zeros({0, 4}, at::kFloat));
    scores_v.push_back(at::zeros({0}, at::kFloat));
    labels_v.push_back(at::zeros({0}, at::kLong));
  }
  PostProcessConfig none = parts_.test_cfg;
  none.nms.type = "none";  // the network removed the duplicates
  return finalize_detections(at::cat(boxes_v), at::cat(scores_v), at::cat(labels_v), meta, padded,
                             none);
}

std::vector<Detections> StandardRoIHeadImpl::predict(const std::vector<at::Tensor>& features,
                                                     const std::vector<at::Tensor>& proposals,
                                                     const Batch& batch) {
  torch::NoGradGuard no_grad;
  const int64_t num_images = batch.size();
  TORCH_CHECK(static_cast<int64_t>(proposals.size()) == num_images,
              "StandardRoIHead::predict: ", num_images, " images but ", proposals.size(),
              " proposal sets");
  std::vector<at::Tensor> rois;
  std::vector<int64_t> keys;
  for (const auto& p : proposals) {
    rois.push_back(p.to(at::kFloat));
    keys.push_back(p.size(0));
  }
  const HeadOutput out = run_head(features, rois, keys, batch);
  const auto padded = padded_size(batch);
  const auto& t = parts_.test_cfg;
  const int64_t c = parts_.num_classes;
  std::vector<Detections> results;
  int64_t start = 0;
  for (int64_t i = 0; i < num_images; ++i) {
    const int64_t k = rois[i].size(0);
    if (t.nms.type == "learned") {
      results.push_back(learned_detections(out, start, k, rois[i], batch.metas[i], padded));
      start += k;
      continue;
    }
    // torchvision's postprocess_detections: softmax, per-class boxes clipped, background
    // dropped, score > score_thr, boxes with a side < min_size dropped, then test_cfg.nms.
    const at::Tensor scores = at::softmax(out.class_logits.narrow(0, start, k), 1).narrow(1, 0, c);
    const at::Tensor boxes = class_boxes(out, start, k, rois[i], batch.metas[i], padded);
    const at::Tensor flat_scores = scores.reshape(-1);
    const at::Tensor flat_boxes = boxes.reshape({-1, 4});
    const at::Tensor flat_labels =
        at::arange(c, flat_scores.options().dtype(at::kLong)).repeat({k});
    const at::Tensor ws = flat_boxes.select(1, 2) - flat_boxes.select(1, 0);
    const at::Tensor hs = flat_boxes.select(1, 3) - flat_boxes.select(1, 1);
    const at::Tensor keep = ((flat_scores > t.score_thr) & (ws >= t.min_size) & (hs >= t.min_size))
                                .nonzero()
                                .squeeze(1);
    results.push_back(
        finalize_detections(flat_boxes.index_select(0, keep), flat_scores.index_select(0, keep),
                            flat_labels.index_select(0, keep), batch.metas[i], padded, t));
    start += k;
  }
  return results;
}

StandardRoIHead build_standard_roi_head(const Config& cfg, int64_t num_classes,
                                        const std::vector<ShapeSpec>& in_shapes) {
  cfg.check_keys({"type", "roi_extractor", "fc_dim", "relations", "relation", "class_agnostic",
                  "background_first", "assigner", "sampler", "loss_cls", "loss_bbox",
                  "bbox_coder_weights", "dedup_head", "dedup_loss_weight", "test_cfg"});
  SETDET_CHECK(cfg.get<std::string>("type", "StandardRoIHead") == "StandardRoIHead", cfg.where(),
               ".type: expected StandardRoIHead, got '", cfg.get<std::string>("type"), "'");
  SETDET_CHECK(!in_shapes.empty(), cfg.where(), ": the RoI head needs pyramid levels");
  RoIHeadParts p;
  p.num_classes = num_classes;
  p.extractor = build_or_default(RoIExtractorRegistry(), cfg, "roi_extractor",
                                 "{type: MultiScaleRoIAlign, output_size: 7, sampling_ratio: 2, "
                                 "num_levels: " +
                                     std::to_string(std::min<size_t>(4, in_shapes.size())) + "}");
  const auto out = p.extractor->output_size();
  const int64_t fc_dim = cfg.get<int64_t>("fc_dim", 1024);
  SETDET_CHECK(fc_dim > 0, cfg.where(), ".fc_dim: expected > 0, got ", fc_dim);
  TwoMLPHeadOptions head_opts(in_shapes.front().channels * out[0] * out[1], fc_dim);
  if (cfg.has("relations")) {
    const auto r = cfg.get<std::vector<int64_t>>("relations");
    SETDET_CHECK(r.size() == 2 && r[0] >= 0 && r[1] >= 0, cfg["relations"].where(),
                 ": expected [r1, r2] (relation modules after fc6 and fc7), got ",
                 cfg["relations"].dump());
    head_opts.relations_fc6(r[0]).relations_fc7(r[1]);
  }
  if (cfg.has("relation")) head_opts.relation(relation_module_options(cfg["relation"], fc_dim));
  p.box_head = TwoMLPHead(head_opts);
  p.predictor = FastRCNNPredictor(fc_dim, num_classes, cfg.get<bool>("class_agnostic", false),
                                  cfg.get<bool>("background_first", true));
  p.assigner = build_or_default(AnchorAssignerRegistry(), cfg, "assigner",
                                "{type: MaxIoUAssigner, pos_iou_thr: 0.5, neg_iou_thr: 0.5, "
                                "allow_low_quality_matches: false}");
  p.sampler = build_or_default(SamplerRegistry(), cfg, "sampler",
                               "{type: RandomSampler, num: 512, pos_fraction: 0.25}");
  p.loss_cls = build_or_default(LossRegistry(), cfg, "loss_cls", "{type: CrossEntropyLoss}");
  p.loss_bbox = build_or_default(LossRegistry(), cfg, "loss_bbox",
                                 "{type: SmoothL1Loss, beta: 0.1111111111111111}");
  if (cfg.has("bbox_coder_weights")) {
    const auto w = cfg.get<std::vector<double>>("bbox_coder_weights");
    SETDET_CHECK(w.size() == 4 && std::all_of(w.begin(), w.end(),
                                              [](double v) { return std::isfinite(v) && v > 0; }),
                 cfg["bbox_coder_weights"].where(), ": expected 4 positive numbers, got ",
                 cfg["bbox_coder_weights"].dump());
    p.coder = DeltaXYWHBoxCoder({w[0], w[1], w[2], w[3]});
  }
  if (cfg.has("dedup_head")) {
    p.dedup = DuplicateRemovalNet(duplicate_removal_net_options(cfg["dedup_head"], fc_dim));
  }
  p.dedup_loss_weight = cfg.get<double>("dedup_loss_weight", 1.0);
  SETDET_CHECK(std::isfinite(p.dedup_loss_weight) && p.dedup_loss_weight >= 0, cfg.where(),
               ".dedup_loss_weight: expected a finite value >= 0, got ", p.dedup_loss_weight);
  if (cfg.has("test_cfg")) {
    const Config t = cfg["test_cfg"];
    static_cast<PostProcessConfig&>(p.test_cfg) =
        PostProcessConfig::from_config(t, p.test_cfg, {"min_size"});
    p.test_cfg.min_size = t.get<double>("min_size", p.test_cfg.min_size);
    SETDET_CHECK(std::isfinite(p.test_cfg.min_size) && p.test_cfg.min_size >= 0, t.where(),
                 ".min_size: expected a finite value >= 0, got ", p.test_cfg.min_size);
  }
  SETDET_CHECK(p.test_cfg.nms.type != "learned" || !p.dedup.is_empty(), cfg.where(),
               ".test_cfg.nms: type learned needs a dedup_head");
  return StandardRoIHead(std::move(p));
}

}  // namespace setdet
