#include "setdet/models/detectors/retinanet.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>

#include "setdet/distributed/process_group.h"
#include "setdet/engine/autocast.h"
#include "setdet/models/detectors/fcos.h"

namespace setdet {

RetinaNetDetector::RetinaNetDetector(int64_t num_classes, std::shared_ptr<Backbone> backbone,
                                     std::shared_ptr<Neck> neck,
                                     std::shared_ptr<RetinaHeadImpl> head, AnchorGenerator anchors,
                                     std::shared_ptr<AnchorAssigner> assigner,
                                     DeltaXYWHBoxCoder coder, RetinaNetLossConfig loss,
                                     RetinaNetTestConfig test_cfg, bool channels_last)
    : SingleStageDetector("RetinaNet", num_classes, std::move(backbone), std::move(neck), head,
                          channels_last),
      head_(std::move(head)),
      anchors_(std::move(anchors)),
      assigner_(std::move(assigner)),
      coder_(coder),
      loss_(std::move(loss)),
      test_cfg_(test_cfg) {
  TORCH_CHECK(assigner_, "RetinaNet: an assigner is required");
  TORCH_CHECK(loss_.cls && loss_.bbox, "RetinaNet: both losses are required");
  TORCH_CHECK(head_->options().num_classes() == num_classes_, "RetinaNet: head has ",
              head_->options().num_classes(), " classes, detector ", num_classes_);
  TORCH_CHECK(head_->options().num_anchors() == anchors_.num_anchors(), "RetinaNet: head predicts ",
              head_->options().num_anchors(), " anchors per location, the anchor generator makes ",
              anchors_.num_anchors());
  TORCH_CHECK(static_cast<int64_t>(head_->strides().size()) == anchors_.num_levels(),
              "RetinaNet: the neck gives ", head_->strides().size(),
              " levels, the anchor generator has sizes for ", anchors_.num_levels());
}

DenseHeadOutputs RetinaNetDetector::forward(const at::Tensor& images) {
  const AutocastGuard autocast(network_autocast(), images.device().type());
  return to_float32(head_->forward(extract_features(images)));
}

std::vector<at::Tensor> RetinaNetDetector::anchors_for(
    const DenseHeadOutputs& out, const std::array<int64_t, 2>& padded_hw) const {
  const auto& cls = out.at("cls_logits");
  std::vector<std::array<int64_t, 2>> sizes;
  for (const auto& m : cls) sizes.push_back({m.size(2), m.size(3)});
  std::vector<at::Tensor> anchors = anchors_.grid_anchors(sizes, padded_hw, head_->strides());
  for (auto& a : anchors) a = a.to(cls.front().device());
  return anchors;
}

std::map<std::string, at::Tensor> RetinaNetDetector::losses(const Batch& batch) {
  TORCH_CHECK(batch.images.defined(), "RetinaNet::losses: batch.images is undefined");
  const int64_t num_images = batch.images.size(0);
  TORCH_CHECK(static_cast<int64_t>(batch.boxes.size()) == num_images &&
                  static_cast<int64_t>(batch.labels.size()) == num_images,
              "RetinaNet::losses: ", num_images, " images but ", batch.boxes.size(),
              " box tensors and ", batch.labels.size(), " label tensors");
  const int64_t c = num_classes_;
  const DenseHeadOutputs out = forward(batch.images);
  const at::Tensor anchors =
      at::cat(anchors_for(out, {batch.images.size(2), batch.images.size(3)}), 0);
  const at::Tensor cls = flatten_anchor_levels(out.at("cls_logits"), c);   // [B, N, C]
  const at::Tensor reg = flatten_anchor_levels(out.at("bbox_deltas"), 4);  // [B, N, 4]

  std::vector<at::Tensor> matched(static_cast<size_t>(num_images));
  int64_t total_pos = 0;
  for (int64_t i = 0; i < num_images; ++i) {
    const at::Tensor gt = batch.boxes[i].to(anchors.device(), at::kFloat);
    TORCH_CHECK(batch.labels[i].numel() == gt.size(0), "RetinaNet::losses: image ", i, " has ",
                gt.size(0), " boxes but ", batch.labels[i].numel(), " labels");
    matched[i] = assigner_->assign(anchors, gt);
    total_pos += (matched[i] >= 0).sum().item<int64_t>();
  }

  // The batch's positives and images over every data-parallel process (per-image normalisation
  // is torchvision's mean over the batch's images of each image's loss / its positives).
  const std::vector<double> batch_norms =
      dist::reduce_normalisers({static_cast<double>(total_pos), static_cast<double>(num_images)});
  at::Tensor loss_cls = cls.sum() * 0.0, loss_bbox = reg.sum() * 0.0;
  for (int64_t i = 0; i < num_images; ++i) {
    const at::Tensor& m = matched[i];
    const at::Tensor fg = (m >= 0).nonzero().squeeze(1);
    const at::Tensor valid = (m != kAnchorIgnored).nonzero().squeeze(1);
    const int64_t num_fg = fg.numel();
    const double norm = loss_.per_image_normalization
                            ? static_cast<double>(std::max<int64_t>(num_fg, 1)) * batch_norms[1]
                            : std::max(batch_norms[0], 1.0);
    const at::Tensor labels = batch.labels[i].to(m.device(), at::kLong);
    const at::Tensor gt = batch.boxes[i].to(m.device(), at::kFloat);
    at::Tensor target = at::zeros({m.size(0), c}, cls.options());
    if (num_fg > 0) {
      const at::Tensor gt_idx = m.index_select(0, fg);
      target.index_put_({fg, labels.index_select(0, gt_idx)}, 1.0);
      const at::Tensor pred = reg[i].index_select(0, fg);
      const at::Tensor fg_anchors = anchors.index_select(0, fg);
      const at::Tensor fg_gt = gt.index_select(0, gt_idx);
      if (loss_.bbox_on_deltas) {
        loss_bbox = loss_bbox + (*loss_.bbox)(pred, coder_.encode(fg_anchors, fg_gt), {}, norm);
      } else {
        loss_bbox = loss_bbox + (*loss_.bbox)(coder_.decode(pred, fg_anchors), fg_gt, {}, norm);
      }
    }
    loss_cls = loss_cls +
               (*loss_.cls)(cls[i].index_select(0, valid), target.index_select(0, valid), {}, norm);
  }
  std::map<std::string, at::Tensor> losses;
  losses["loss_cls"] = loss_cls;
  losses["loss_bbox"] = loss_bbox;
  losses["num_pos"] = at::scalar_tensor(static_cast<double>(total_pos));
  return losses;
}

std::vector<Detections> RetinaNetDetector::predict(const Batch& batch) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(batch.images.defined(), "RetinaNet::predict: batch.images is undefined");
  const int64_t num_images = batch.images.size(0);
  TORCH_CHECK(batch.size() == num_images, "RetinaNet::predict: ", num_images, " images but ",
              batch.size(), " metas");
  const int64_t c = num_classes_;
  const DenseHeadOutputs out = forward(batch.images);
  std::vector<at::Tensor> anchors = anchors_for(out, {batch.images.size(2), batch.images.size(3)});
  std::vector<at::Tensor> scores, deltas;
  for (size_t l = 0; l < anchors.size(); ++l) {
    scores.push_back(
        flatten_anchor_level(out.at("cls_logits")[l], c).sigmoid().to(at::kCPU).contiguous());
    deltas.push_back(flatten_anchor_level(out.at("bbox_deltas")[l], 4).to(at::kCPU));
    anchors[l] = anchors[l].to(at::kCPU);
  }

  std::vector<Detections> results;
  for (int64_t i = 0; i < num_images; ++i) {
    std::vector<at::Tensor> boxes_v, scores_v, labels_v;
    for (size_t l = 0; l < scores.size(); ++l) {
      const Candidates cand =
          select_candidates(scores[l][i], test_cfg_.score_thr, test_cfg_.pre_nms_top_k);
      boxes_v.push_back(coder_.decode(deltas[l][i].index_select(0, cand.locations),
                                      anchors[l].index_select(0, cand.locations)));
      scores_v.push_back(cand.scores);
      labels_v.push_back(cand.labels);
    }
    results.push_back(finalize_detections(at::cat(boxes_v, 0), at::cat(scores_v, 0),
                                          at::cat(labels_v, 0), batch.metas[i], padded_size(batch),
                                          test_cfg_));
  }
  return results;
}

namespace {

// Coordinate-wise losses regress the coder's deltas (torchvision's L1, MMDetection's
// reg_decoded_bbox = false); the others (IoU family) compare decoded boxes with the GT boxes.
std::shared_ptr<Loss> build_bbox_loss(const Config& parent, bool& on_deltas) {
  const Config cfg = parent.has("loss_bbox")
                         ? parent["loss_bbox"]
                         : Config::parse("{type: L1Loss}", parent.where() + ".loss_bbox (default)");
  const auto type = cfg.get<std::string>("type");
  on_deltas = type == "L1Loss" || type == "SmoothL1Loss" || type == "BalancedL1Loss";
  return LossRegistry().build(cfg);
}

std::array<double, 4> read_weights(const Config& node) {
  SETDET_CHECK(node.is_sequence() && node.size() == 4, node.where(),
               ": expected 4 positive numbers, got '", node.dump(), "'");
  std::array<double, 4> w{};
  for (size_t k = 0; k < 4; ++k) {
    w[k] = node.at(k).as<double>();
    SETDET_CHECK(w[k] > 0, node.where(), ": expected positive weights, got '", node.dump(), "'");
  }
  return w;
}

}  // namespace

std::shared_ptr<RetinaNetDetector> build_retinanet(const Config& cfg) {
  cfg.check_keys({"type", "num_classes", "backbone", "neck", "head", "anchor_generator", "assigner",
                  "box_coder", "loss_cls", "loss_bbox", "per_image_normalization", "test_cfg",
                  "channels_last"});
  const auto num_classes = cfg.get<int64_t>("num_classes");
  SETDET_CHECK(num_classes > 0, cfg["num_classes"].where(), ": expected > 0, got ", num_classes);

  auto backbone = BackboneRegistry().build(cfg["backbone"]);
  auto neck = NeckRegistry().build(cfg["neck"])(backbone->output_shape());
  auto dense_head = DenseHeadRegistry().build(cfg["head"])(neck->output_shape(), num_classes);
  auto head = std::dynamic_pointer_cast<RetinaHeadImpl>(dense_head);
  SETDET_CHECK(head != nullptr, cfg["head"]["type"].where(),
               ": RetinaNet needs a RetinaHead, got '", cfg["head"].get<std::string>("type"), "'");

  AnchorGeneratorOptions anchor_opts =
      cfg.has("anchor_generator") ? anchor_generator_options_from_config(cfg["anchor_generator"])
                                  : anchor_generator_options_from_config(Config::parse(
                                        "{}", cfg.where() + ".anchor_generator (default)"));
  const std::string anchor_where =
      cfg.has("anchor_generator") ? cfg["anchor_generator"].where() : cfg.where();
  SETDET_CHECK(anchor_opts.sizes().size() == head->strides().size(), anchor_where, ": sizes for ",
               anchor_opts.sizes().size(), " levels but the neck gives ", head->strides().size());
  AnchorGenerator anchors(anchor_opts);
  SETDET_CHECK(anchors.num_anchors() == head->options().num_anchors(), anchor_where, ": ",
               anchors.num_anchors(), " anchors per location but head.num_anchors is ",
               head->options().num_anchors());

  std::shared_ptr<AnchorAssigner> assigner = cfg.has("assigner")
                                                 ? AnchorAssignerRegistry().build(cfg["assigner"])
                                                 : std::make_shared<MaxIoUAssigner>();

  std::array<double, 4> weights{1.0, 1.0, 1.0, 1.0};
  double clip = std::log(1000.0 / 16.0);
  if (cfg.has("box_coder")) {
    const Config bc = cfg["box_coder"];
    bc.check_keys({"weights", "clip"});
    if (bc.has("weights")) weights = read_weights(bc["weights"]);
    clip = bc.get<double>("clip", clip);
  }

  RetinaNetLossConfig loss;
  loss.cls = cfg.has("loss_cls")
                 ? LossRegistry().build(cfg["loss_cls"])
                 : LossRegistry().build(
                       Config::parse("{type: FocalLoss, alpha: 0.25, gamma: 2.0, loss_weight: 1.0}",
                                     cfg.where() + ".loss_cls (default)"));
  loss.bbox = build_bbox_loss(cfg, loss.bbox_on_deltas);
  loss.per_image_normalization = cfg.get<bool>("per_image_normalization", true);

  RetinaNetTestConfig test;
  if (cfg.has("test_cfg")) {
    static_cast<PostProcessConfig&>(test) = PostProcessConfig::from_config(cfg["test_cfg"], test);
  }
  return std::make_shared<RetinaNetDetector>(num_classes, backbone, neck, head, std::move(anchors),
                                             assigner, DeltaXYWHBoxCoder(weights, clip), loss, test,
                                             cfg.get<bool>("channels_last", true));
}

SETDET_REGISTER(DetectorRegistry, "RetinaNet",
                [](const Config& cfg) -> std::shared_ptr<DetectorModel> {
                  return build_retinanet(cfg);
                });

}  // namespace setdet
