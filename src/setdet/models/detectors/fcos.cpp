#include "setdet/models/detectors/fcos.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>

#include "setdet/distributed/process_group.h"
#include "setdet/engine/autocast.h"
#include "setdet/structures/anchors.h"

namespace setdet {

at::Tensor flatten_levels(const std::vector<at::Tensor>& maps, int64_t k) {
  std::vector<at::Tensor> flat;
  flat.reserve(maps.size());
  for (const auto& m : maps) flat.push_back(m.permute({0, 2, 3, 1}).reshape({m.size(0), -1, k}));
  return at::cat(flat, 1);
}

namespace {

// (l, t, r, b) -> a box around the origin, for translation-invariant IoU losses.
at::Tensor distances_to_boxes(const at::Tensor& d) {
  return at::cat({-d.narrow(1, 0, 2), d.narrow(1, 2, 2)}, 1);
}

}  // namespace

FCOSDetector::FCOSDetector(int64_t num_classes, std::shared_ptr<Backbone> backbone,
                           std::shared_ptr<Neck> neck, std::shared_ptr<FCOSHeadImpl> head,
                           std::shared_ptr<PointAssigner> assigner, FCOSLossConfig loss,
                           FCOSTestConfig test_cfg, bool channels_last)
    : SingleStageDetector("FCOS", num_classes, std::move(backbone), std::move(neck), head,
                          channels_last),
      head_(std::move(head)),
      assigner_(std::move(assigner)),
      loss_(std::move(loss)),
      test_cfg_(test_cfg) {
  TORCH_CHECK(assigner_, "FCOS: an assigner is required");
  TORCH_CHECK(loss_.cls && loss_.bbox && loss_.centerness, "FCOS: the three losses are required");
  TORCH_CHECK(head_->options().num_classes() == num_classes_, "FCOS: head has ",
              head_->options().num_classes(), " classes, detector ", num_classes_);
}

DenseHeadOutputs FCOSDetector::forward(const at::Tensor& images) {
  const AutocastGuard autocast(network_autocast(), images.device().type());
  return to_float32(head_->forward(extract_features(images)));
}

PointSet FCOSDetector::points_for(const std::vector<at::Tensor>& level_maps) {
  std::vector<std::array<int64_t, 2>> sizes;
  for (const auto& m : level_maps) sizes.push_back({m.size(2), m.size(3)});
  const std::lock_guard<std::mutex> lock(cached_points_mutex_);
  if (sizes != cached_sizes_ || !cached_points_.points.defined() ||
      cached_points_.points.device() != level_maps.front().device()) {
    cached_points_ = head_->points(sizes, level_maps.front().options().dtype(at::kFloat));
    cached_sizes_ = sizes;
  }
  return cached_points_;
}

std::map<std::string, at::Tensor> FCOSDetector::losses(const Batch& batch) {
  TORCH_CHECK(batch.images.defined(), "FCOS::losses: batch.images is undefined");
  const int64_t num_images = batch.images.size(0);
  TORCH_CHECK(static_cast<int64_t>(batch.boxes.size()) == num_images &&
                  static_cast<int64_t>(batch.labels.size()) == num_images,
              "FCOS::losses: ", num_images, " images but ", batch.boxes.size(), " box tensors and ",
              batch.labels.size(), " label tensors");
  DenseHeadOutputs out = forward(batch.images);
  const PointSet& ps = points_for(out["cls_logits"]);
  const PointTargets t = assigner_->assign(ps, batch.boxes, batch.labels, num_classes_);
  return one_to_many_losses(out, t);
}

std::map<std::string, at::Tensor> FCOSDetector::one_to_many_losses(const DenseHeadOutputs& out,
                                                                   const PointTargets& t) {
  const int64_t c = num_classes_;
  const at::Tensor cls = flatten_levels(out.at("cls_logits"), c);       // [B, P, C]
  const at::Tensor dist = flatten_levels(out.at("bbox_distances"), 4);  // [B, P, 4]
  const at::Tensor ctr = flatten_levels(out.at("centerness"), 1);       // [B, P, 1]
  const int64_t num_images = cls.size(0);
  const at::Tensor pos = (t.labels.reshape(-1) < c).nonzero().squeeze(1);
  const at::Tensor ctr_target = t.centerness.reshape(-1).index_select(0, pos);
  // Normalisers over the whole batch (of every data-parallel process), as MMDetection's FCOS:
  // max(reduce_mean(num_pos), 1) and max(reduce_mean(sum of centre-ness targets), 1e-6).
  const std::vector<double> norms =
      dist::reduce_normalisers({static_cast<double>(t.num_positives),
                                pos.numel() == 0 ? 0.0 : ctr_target.sum().item<double>()});
  const double num_pos = std::max(norms[0], 1.0);

  const at::Tensor onehot = at::zeros({num_images, cls.size(1), c + 1}, cls.options())
                                .scatter_(2, t.labels.unsqueeze(2), 1.0)
                                .narrow(2, 0, c);
  std::map<std::string, at::Tensor> losses;
  losses["loss_cls"] = (*loss_.cls)(cls, onehot, {}, num_pos);

  if (pos.numel() == 0) {
    losses["loss_bbox"] = dist.sum() * 0.0;
    losses["loss_centerness"] = ctr.sum() * 0.0;
  } else {
    const at::Tensor pred_boxes = distances_to_boxes(dist.reshape({-1, 4}).index_select(0, pos));
    const at::Tensor target_boxes =
        distances_to_boxes(t.distances.reshape({-1, 4}).index_select(0, pos));
    if (loss_.centerness_weighted_bbox) {
      const double denom = std::max(norms[1], 1e-6);
      losses["loss_bbox"] = (*loss_.bbox)(pred_boxes, target_boxes, ctr_target, denom);
    } else {
      losses["loss_bbox"] = (*loss_.bbox)(pred_boxes, target_boxes, {}, num_pos);
    }
    losses["loss_centerness"] =
        (*loss_.centerness)(ctr.reshape(-1).index_select(0, pos), ctr_target, {}, num_pos);
  }
  losses["num_pos"] = at::scalar_tensor(static_cast<double>(t.num_positives));
  return losses;
}

std::vector<Detections> FCOSDetector::predict(const Batch& batch) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(batch.images.defined(), "FCOS::predict: batch.images is undefined");
  const int64_t num_images = batch.images.size(0);
  TORCH_CHECK(batch.size() == num_images, "FCOS::predict: ", num_images, " images but ",
              batch.size(), " metas");
  const int64_t c = num_classes_;
  DenseHeadOutputs out = forward(batch.images);
  const auto& cls_l = out["cls_logits"];
  const auto& dist_l = out["bbox_distances"];
  const auto& ctr_l = out["centerness"];
  const PointSet& ps = points_for(cls_l);
  std::vector<at::Tensor> tv_points;
  if (test_cfg_.image_over_grid_points) {
    std::vector<std::array<int64_t, 2>> grid;
    for (const auto& m : cls_l) grid.push_back({m.size(2), m.size(3)});
    tv_points = image_over_grid_points(grid, {batch.images.size(2), batch.images.size(3)},
                                       head_->options().center_offset());
  }

  // Per level [B, HW, C] scores and [B, HW, 4] distances, on CPU for the duplicate removal.
  std::vector<at::Tensor> scores, dists, points;
  int64_t start = 0;
  for (size_t l = 0; l < cls_l.size(); ++l) {
    const at::Tensor s = (cls_l[l].sigmoid() * ctr_l[l].sigmoid()).sqrt_();
    scores.push_back(
        s.permute({0, 2, 3, 1}).reshape({num_images, -1, c}).to(at::kCPU).contiguous());
    dists.push_back(dist_l[l].permute({0, 2, 3, 1}).reshape({num_images, -1, 4}).to(at::kCPU));
    points.push_back(test_cfg_.image_over_grid_points
                         ? tv_points[l]
                         : ps.points.narrow(0, start, ps.num_points[l]).to(at::kCPU));
    start += ps.num_points[l];
  }

  std::vector<Detections> results;
  for (int64_t i = 0; i < num_images; ++i) {
    std::vector<at::Tensor> boxes_v, scores_v, labels_v;
    for (size_t l = 0; l < scores.size(); ++l) {
      const Candidates cand =
          select_candidates(scores[l][i], test_cfg_.score_thr, test_cfg_.pre_nms_top_k);
      const at::Tensor d = dists[l][i].index_select(0, cand.locations);
      const at::Tensor p = points[l].index_select(0, cand.locations);
      boxes_v.push_back(at::cat({p - d.narrow(1, 0, 2), p + d.narrow(1, 2, 2)}, 1));
      scores_v.push_back(cand.scores);
      labels_v.push_back(cand.labels);
    }
    results.push_back(finalize_detections(at::cat(boxes_v, 0), at::cat(scores_v, 0),
                                          at::cat(labels_v, 0), batch.metas[i], padded_size(batch),
                                          test_cfg_));
  }
  return results;
}

std::shared_ptr<FCOSDetector> build_fcos(const Config& cfg) {
  FCOSParts p = build_fcos_parts(cfg);
  return std::make_shared<FCOSDetector>(p.num_classes, p.backbone, p.neck, p.head, p.assigner,
                                        p.loss, p.test_cfg, p.channels_last);
}

FCOSParts build_fcos_parts(const Config& cfg, const std::vector<std::string>& extra_keys,
                           const std::string& default_assigner) {
  std::vector<std::string> keys = extra_keys;
  keys.insert(keys.end(), {"type", "num_classes", "backbone", "neck", "head", "assigner",
                           "loss_cls", "loss_bbox", "loss_centerness", "centerness_weighted_bbox",
                           "test_cfg", "channels_last"});
  cfg.check_keys(keys);
  const auto num_classes = cfg.get<int64_t>("num_classes");
  SETDET_CHECK(num_classes > 0, cfg["num_classes"].where(), ": expected > 0, got ", num_classes);

  auto backbone = BackboneRegistry().build(cfg["backbone"]);
  auto neck = NeckRegistry().build(cfg["neck"])(backbone->output_shape());
  auto dense_head = DenseHeadRegistry().build(cfg["head"])(neck->output_shape(), num_classes);
  auto head = std::dynamic_pointer_cast<FCOSHeadImpl>(dense_head);
  SETDET_CHECK(head != nullptr, cfg["head"]["type"].where(), ": FCOS needs an FCOSHead, got '",
               cfg["head"].get<std::string>("type"), "'");

  std::shared_ptr<PointAssigner> assigner =
      cfg.has("assigner")
          ? PointAssignerRegistry().build(cfg["assigner"])
          : PointAssignerRegistry().build(Config::parse("{type: " + default_assigner + "}",
                                                        cfg.where() + ".assigner (default)"));
  if (auto* fa = dynamic_cast<FCOSAssigner*>(assigner.get())) {
    const size_t levels = head->strides().size();
    SETDET_CHECK(fa->options().regress_ranges().size() == levels,
                 cfg.has("assigner") ? cfg["assigner"].where() : cfg.where(),
                 ": regress_ranges has ", fa->options().regress_ranges().size(),
                 " entries but the neck gives ", levels, " levels");
  }

  FCOSLossConfig loss;
  loss.cls = build_or_default(LossRegistry(), cfg, "loss_cls",
                              "{type: FocalLoss, alpha: 0.25, gamma: 2.0, loss_weight: 1.0}");
  loss.bbox =
      build_or_default(LossRegistry(), cfg, "loss_bbox", "{type: GIoULoss, loss_weight: 1.0}");
  loss.centerness = build_or_default(LossRegistry(), cfg, "loss_centerness",
                                     "{type: BCEWithLogitsLoss, loss_weight: 1.0}");
  loss.centerness_weighted_bbox = cfg.get<bool>("centerness_weighted_bbox", true);

  FCOSTestConfig test;
  if (cfg.has("test_cfg")) {
    const Config t = cfg["test_cfg"];
    static_cast<PostProcessConfig&>(test) =
        PostProcessConfig::from_config(t, test, {"image_over_grid_points"});
    test.image_over_grid_points = t.get<bool>("image_over_grid_points", false);
  }
  FCOSParts parts;
  parts.num_classes = num_classes;
  parts.backbone = backbone;
  parts.neck = neck;
  parts.head = head;
  parts.assigner = assigner;
  parts.loss = loss;
  parts.test_cfg = test;
  parts.channels_last = cfg.get<bool>("channels_last", true);
  return parts;
}

SETDET_REGISTER(DetectorRegistry, "FCOS", [](const Config& cfg) -> std::shared_ptr<DetectorModel> {
  return build_fcos(cfg);
});

}  // namespace setdet
