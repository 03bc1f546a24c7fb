#include "setdet/models/detectors/fcos_pss.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>

#include "setdet/distributed/process_group.h"
#include "setdet/losses/pss_loss.h"
#include "setdet/losses/rank_loss.h"

namespace setdet {
namespace {

constexpr const char* kNmsFree = "nms_free";
constexpr const char* kNms = "nms";

bool known_mode(const std::string& m) { return m == kNmsFree || m == kNms; }

}  // namespace

FCOSPSSDetector::FCOSPSSDetector(FCOSParts parts,
                                 std::shared_ptr<PositiveSampleSelectorImpl> pss_head,
                                 PSSTrainConfig train_cfg, PSSTestConfig pss_test_cfg)
    : FCOSDetector(parts.num_classes, parts.backbone, parts.neck, parts.head, parts.assigner,
                   parts.loss, parts.test_cfg, parts.channels_last),
      pss_head_(std::move(pss_head)),
      train_cfg_(train_cfg),
      pss_test_cfg_(std::move(pss_test_cfg)) {
  TORCH_CHECK(pss_head_ != nullptr, "FCOS_PSS: the PSS head is required");
  const int64_t reg_channels = head_->options().num_convs() > 0 ? head_->options().channels()
                                                                : head_->options().in_channels();
  TORCH_CHECK(pss_head_->options().in_channels() == reg_channels, "FCOS_PSS: the PSS head reads ",
              pss_head_->options().in_channels(), " channels, the regression tower gives ",
              reg_channels);
  TORCH_CHECK(pss_head_->options().stop_gradient() == train_cfg_.stop_gradient,
              "FCOS_PSS: the PSS head's stop_gradient must match the training config's");
  TORCH_CHECK(known_mode(pss_test_cfg_.output_mode), "FCOS_PSS: unknown output mode '",
              pss_test_cfg_.output_mode, "' (known: nms_free, nms)");
  TORCH_CHECK(train_cfg_.rank_num_neg > 0, "FCOS_PSS: rank_num_neg must be positive, got ",
              train_cfg_.rank_num_neg);
  head_->set_output_reg_features(true);
  register_module("pss_head", pss_head_);
}

std::vector<DetectorModel::OutputMode> FCOSPSSDetector::output_modes() const {
  return {{kNmsFree, "without_nms"}, {kNms, "with_nms"}};
}

void FCOSPSSDetector::set_output_mode(const std::string& name) {
  SETDET_CHECK(known_mode(name), "FCOS_PSS: unknown output mode '", name,
               "' (known: nms_free, nms)");
  pss_test_cfg_.output_mode = name;
}

DuplicateRemovalConfig* FCOSPSSDetector::duplicate_removal() {
  return pss_test_cfg_.output_mode == kNms ? FCOSDetector::duplicate_removal() : nullptr;
}

DenseHeadOutputs FCOSPSSDetector::forward_pss(const at::Tensor& images) {
  DenseHeadOutputs out = forward(images);
  out["pss"] = to_float32(pss_head_->forward(out.at("reg_features")));
  return out;
}

std::map<std::string, at::Tensor> FCOSPSSDetector::losses(const Batch& batch) {
  TORCH_CHECK(batch.images.defined(), "FCOS_PSS::losses: batch.images is undefined");
  const int64_t num_images = batch.images.size(0);
  TORCH_CHECK(static_cast<int64_t>(batch.boxes.size()) == num_images &&
                  static_cast<int64_t>(batch.labels.size()) == num_images,
              "FCOS_PSS::losses: ", num_images, " images but ", batch.boxes.size(),
              " box tensors and ", batch.labels.size(), " label tensors");
  const int64_t c = num_classes_;
  DenseHeadOutputs out = forward_pss(batch.images);
  const PointSet& ps = points_for(out.at("cls_logits"));
  const PointTargets t = assigner_->assign(ps, batch.boxes, batch.labels, c);
  std::map<std::string, at::Tensor> losses = one_to_many_losses(out, t);

  // Eq. (4) in log space: log P_i(c) = log sigma(pss_i) + log sigma(s_i,c) + log sigma(ctr_i).
  const at::Tensor pss = flatten_levels(out.at("pss"), 1);  // [B, P, 1]
  at::Tensor fcos_log = at::log_sigmoid(flatten_levels(out.at("cls_logits"), c)) +
                        at::log_sigmoid(flatten_levels(out.at("centerness"), 1));  // [B, P, C]
  if (train_cfg_.stop_gradient) fcos_log = fcos_log.detach();
  const at::Tensor log_prob = at::log_sigmoid(pss) + fcos_log;  // [B, P, C]

  // Eq. (3) on detached predictions: P_i(c_j) and the IoU of the predicted box with GT j.
  const at::Tensor dist = flatten_levels(out.at("bbox_distances"), 4).detach();  // [B, P, 4]
  const at::Tensor pts = ps.points.to(dist.device()).unsqueeze(0);               // [1, P, 2]
  const at::Tensor pred_boxes =
      at::cat({pts - dist.narrow(2, 0, 2), pts + dist.narrow(2, 2, 2)}, 2);  // [B, P, 4]
  const OneToOneTargets o2o = assign_one_to_one(log_prob.detach().exp(), pred_boxes, t.matched,
                                                batch.boxes, batch.labels, train_cfg_.one_to_one);

  const at::Tensor is_pos = o2o.labels > 0.5;  // [B, P, C]
  // Normalisers over the whole batch of every data-parallel process: the one-to-one positives
  // and the images with one (those that have a ranking loss).
  const int64_t rank_images = is_pos.flatten(1).any(1).sum().item<int64_t>();
  const std::vector<double> norms = setdet::dist::reduce_normalisers(
      {static_cast<double>(o2o.num_positives), static_cast<double>(rank_images)});
  const double num_o2o = std::max(norms[0], 1.0);
  losses["loss_pss"] =
      focal_loss_from_log_prob(log_prob, o2o.labels, train_cfg_.focal_alpha, train_cfg_.focal_gamma)
          .sum() *
      (train_cfg_.pss_weight / num_o2o);

  // Eq. (2) per image: positives P_i+(c_i+) at the one-to-one targets; negatives every other
  // point, scored at its highest class (c_i- = argmax_c P_i-(c)), the top rank_num_neg of them.
  const at::Tensor prob = log_prob.exp();
  const at::Tensor pos_point = is_pos.any(2);  // [B, P]
  at::Tensor rank_sum = prob.sum() * 0.0;
  for (int64_t i = 0; i < num_images; ++i) {
    const at::Tensor pos_scores = prob[i].masked_select(is_pos[i]);
    if (pos_scores.numel() == 0) continue;
    const at::Tensor neg_scores =
        std::get<0>(prob[i].max(1)).masked_select(pos_point[i].logical_not());
    rank_sum = rank_sum + ranking_loss(pos_scores, neg_scores, train_cfg_.rank_margin,
                                       train_cfg_.rank_num_neg);
  }
  losses["loss_rank"] = rank_sum * (train_cfg_.rank_weight / std::max(norms[1], 1.0));
  losses["num_pos_one_to_one"] = at::scalar_tensor(static_cast<double>(o2o.num_positives));
  return losses;
}

std::vector<Detections> FCOSPSSDetector::predict(const Batch& batch) {
  if (pss_test_cfg_.output_mode == kNms) return FCOSDetector::predict(batch);
  torch::NoGradGuard no_grad;
  TORCH_CHECK(batch.images.defined(), "FCOS_PSS::predict: batch.images is undefined");
  TORCH_CHECK(batch.size() == batch.images.size(0), "FCOS_PSS::predict: ", batch.images.size(0),
              " images but ", batch.size(), " metas");
  const DenseHeadOutputs out = forward_pss(batch.images);
  return decode_nms_free(out, points_for(out.at("cls_logits")), batch);
}

std::vector<Detections> FCOSPSSDetector::decode_nms_free(const DenseHeadOutputs& out,
                                                         const PointSet& ps,
                                                         const Batch& batch) const {
  const int64_t c = num_classes_;
  const int64_t num_images = out.at("cls_logits").front().size(0);
  TORCH_CHECK(batch.size() == num_images, "FCOS_PSS::decode_nms_free: ", num_images, " images but ",
              batch.size(), " metas");
  // Eq. (4), [B, P * C] (point-major, then class)
  const at::Tensor score = (flatten_levels(out.at("cls_logits"), c).sigmoid() *
                            flatten_levels(out.at("centerness"), 1).sigmoid() *
                            flatten_levels(out.at("pss"), 1).sigmoid())
                               .reshape({num_images, -1})
                               .to(at::kCPU);
  const at::Tensor dist = flatten_levels(out.at("bbox_distances"), 4).to(at::kCPU);  // [B, P, 4]
  const at::Tensor points = ps.points.to(at::kCPU);

  PostProcessConfig post;
  post.nms.type = "none";
  post.max_per_img = pss_test_cfg_.max_per_img;
  std::vector<Detections> results;
  for (int64_t i = 0; i < num_images; ++i) {
    const Candidates cand =
        select_candidates(score[i].reshape({-1, c}), pss_test_cfg_.score_thr, post.max_per_img);
    const at::Tensor d = dist[i].index_select(0, cand.locations);
    const at::Tensor p = points.index_select(0, cand.locations);
    results.push_back(
        finalize_detections(at::cat({p - d.narrow(1, 0, 2), p + d.narrow(1, 2, 2)}, 1), cand.scores,
                            cand.labels, batch.metas[i], padded_size(batch), post));
  }
  return results;
}

std::shared_ptr<FCOSPSSDetector> build_fcos_pss(const Config& cfg,
                                                const std::string& default_assigner) {
  FCOSParts parts =
      build_fcos_parts(cfg, {"pss_head", "pss_train_cfg", "pss_test_cfg"}, default_assigner);

  PSSTrainConfig train;
  if (cfg.has("pss_train_cfg")) {
    const Config t = cfg["pss_train_cfg"];
    t.check_keys({"alpha", "matcher", "stop_gradient", "pss_weight", "focal_alpha", "focal_gamma",
                  "rank_weight", "rank_margin", "rank_num_neg"});
    train.one_to_one.alpha = t.get<double>("alpha", train.one_to_one.alpha);
    SETDET_CHECK(train.one_to_one.alpha >= 0 && train.one_to_one.alpha <= 1, t.where(),
                 ".alpha: expected a value in [0, 1], got ", train.one_to_one.alpha);
    if (t.has("matcher")) {
      train.one_to_one.matcher =
          parse_one_to_one_matcher(t.get<std::string>("matcher"), t["matcher"].where());
    }
    train.stop_gradient = t.get<bool>("stop_gradient", train.stop_gradient);
    train.pss_weight = t.get<double>("pss_weight", train.pss_weight);
    train.focal_alpha = t.get<double>("focal_alpha", train.focal_alpha);
    train.focal_gamma = t.get<double>("focal_gamma", train.focal_gamma);
    train.rank_weight = t.get<double>("rank_weight", train.rank_weight);
    train.rank_margin = t.get<double>("rank_margin", train.rank_margin);
    train.rank_num_neg = t.get<int64_t>("rank_num_neg", train.rank_num_neg);
    SETDET_CHECK(train.pss_weight >= 0, t.where(), ".pss_weight: expected >= 0, got ",
                 train.pss_weight);
    SETDET_CHECK(train.rank_weight >= 0, t.where(), ".rank_weight: expected >= 0, got ",
                 train.rank_weight);
    SETDET_CHECK(train.focal_gamma >= 0, t.where(), ".focal_gamma: expected >= 0, got ",
                 train.focal_gamma);
    SETDET_CHECK(train.rank_num_neg > 0, t.where(), ".rank_num_neg: expected > 0, got ",
                 train.rank_num_neg);
  }

  PSSTestConfig test;
  if (cfg.has("pss_test_cfg")) {
    const Config t = cfg["pss_test_cfg"];
    t.check_keys({"output_mode", "score_thr", "max_per_img"});
    test.output_mode = t.get<std::string>("output_mode", test.output_mode);
    SETDET_CHECK(known_mode(test.output_mode), t.where(),
                 ".output_mode: expected 'nms_free' or 'nms', got '", test.output_mode, "'");
    test.score_thr = t.get<double>("score_thr", test.score_thr);
    test.max_per_img = t.get<int64_t>("max_per_img", test.max_per_img);
  }

  const FCOSHeadOptions& ho = parts.head->options();
  const int64_t reg_channels = ho.num_convs() > 0 ? ho.channels() : ho.in_channels();
  PositiveSampleSelectorOptions po(reg_channels);
  po.gn_groups(ho.gn_groups()).stop_gradient(train.stop_gradient);
  if (cfg.has("pss_head")) {
    const Config h = cfg["pss_head"];
    h.check_keys({"num_convs", "channels", "gn_groups"});
    po.num_convs(h.get<int64_t>("num_convs", po.num_convs()))
        .channels(h.get<int64_t>("channels", po.channels()))
        .gn_groups(h.get<int64_t>("gn_groups", po.gn_groups()));
    SETDET_CHECK(po.num_convs() >= 0, h.where(), ".num_convs: expected >= 0, got ", po.num_convs());
    SETDET_CHECK(po.channels() > 0, h.where(), ".channels: expected > 0, got ", po.channels());
    SETDET_CHECK(po.gn_groups() == 0 || (po.gn_groups() > 0 && po.channels() % po.gn_groups() == 0),
                 h.where(), ".gn_groups: expected 0 or a positive divisor of ", po.channels(),
                 ", got ", po.gn_groups());
    SETDET_CHECK(po.num_convs() > 0 || po.channels() == reg_channels, h.where(),
                 ".channels: with num_convs 0 it must equal the regression tower's ", reg_channels);
  }
  auto pss_head = std::make_shared<PositiveSampleSelectorImpl>(po);
  return std::make_shared<FCOSPSSDetector>(std::move(parts), pss_head, train, test);
}

SETDET_REGISTER(DetectorRegistry, "FCOS_PSS",
                [](const Config& cfg) -> std::shared_ptr<DetectorModel> {
                  return build_fcos_pss(cfg, "FCOSAssigner");
                });
SETDET_REGISTER(DetectorRegistry, "ATSS_PSS",
                [](const Config& cfg) -> std::shared_ptr<DetectorModel> {
                  return build_fcos_pss(cfg, "ATSSAssigner");
                });

}  // namespace setdet
