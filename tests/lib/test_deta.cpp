// Two-stage Deformable DETR / DETA (models/detectors/deformable_detr.h): parameter names, the
// assignment switch (stage 2 reused for every decoder layer, Hungarian per layer), losses that
// fall under training for both assignments, post-processing, config errors; the sine embeddings;
// paramwise custom_keys learning-rate multipliers; DETR's resize / crop.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "detector_testing.h"
#include "setdet/data/transforms.h"
#include "setdet/engine/optim.h"
#include "setdet/losses/iou_loss.h"
#include "setdet/models/detectors/deformable_detr.h"
#include "setdet/models/transformers/position_encoding.h"
#include "setdet/structures/box_ops.h"

namespace setdet {
namespace {

using test_util::build_error;
using test_util::two_image_batch;

std::string tiny_yaml(const std::string& assigner, const std::string& extra = "") {
  return "type: DeformableDETR\nnum_classes: 3\nnum_queries: 20\n"
         "backbone: {type: ResNet, depth: 18, base_channels: 8, out_indices: [1, 2, 3]}\n"
         "num_feature_levels: 4\n"
         "transformer: {d_model: 32, nhead: 4, num_encoder_layers: 1, num_decoder_layers: 2, "
         "dim_feedforward: 64, dropout: 0.0, enc_n_points: 2, dec_n_points: 2}\n"
         "assigner: " +
         assigner + "\n" + extra;
}

std::shared_ptr<DeformableDETR> tiny(const std::string& assigner, const std::string& extra = "") {
  at::manual_seed(0);
  auto d = DetectorRegistry().build(Config::parse(tiny_yaml(assigner, extra), "m.yaml"));
  return std::dynamic_pointer_cast<DeformableDETR>(d);
}

TEST(Deta, ParameterNamesAreTheAuthors) {
  auto model = tiny("deta");
  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) names.insert(p.key());
  for (const auto& b : model->named_buffers()) names.insert(b.key());
  for (const char* n : {"backbone.0.body.conv1.weight",
                        "backbone.0.body.layer4.1.bn2.running_var",
                        "input_proj.0.0.weight",
                        "input_proj.0.1.bias",
                        "input_proj.3.0.weight",
                        "transformer.level_embed",
                        "transformer.encoder.layers.0.self_attn.sampling_offsets.bias",
                        "transformer.encoder.layers.0.self_attn.attention_weights.weight",
                        "transformer.encoder.layers.0.self_attn.value_proj.weight",
                        "transformer.encoder.layers.0.norm2.weight",
                        "transformer.encoder.layers.0.linear1.weight",
                        "transformer.decoder.layers.1.cross_attn.output_proj.bias",
                        "transformer.decoder.layers.1.self_attn.in_proj_weight",
                        "transformer.decoder.layers.1.self_attn.in_proj_bias",
                        "transformer.decoder.layers.1.self_attn.out_proj.weight",
                        "transformer.decoder.layers.1.norm3.bias",
                        "transformer.enc_output.weight",
                        "transformer.enc_output_norm.weight",
                        "transformer.pos_trans.weight",
                        "transformer.pos_trans_norm.bias",
                        "transformer.pix_trans.weight",
                        "transformer.pix_trans_norm.weight",
                        "class_embed.2.weight",
                        "bbox_embed.2.layers.2.bias"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  EXPECT_FALSE(names.count("class_embed.3.weight"));  // 2 decoder layers + the first stage
  // the extra level reads the last backbone map (64 channels at base 8) with a 3x3 stride-2 conv
  const auto params = model->named_parameters();
  EXPECT_EQ(params["input_proj.3.0.weight"].sizes(), (at::IntArrayRef{32, 64, 3, 3}));
  // DETR's head init: identical clones, class prior 0.01, last box layer zero
  EXPECT_TRUE(params["class_embed.0.weight"].equal(params["class_embed.2.weight"]));
  EXPECT_NEAR(params["class_embed.1.bias"][0].item<double>(), -std::log(99.0), 1e-6);
  EXPECT_EQ(params["bbox_embed.1.layers.2.weight"].abs().sum().item<double>(), 0.0);
}

TEST(Deta, OutputsHaveTheDocumentedShapes) {
  auto model = tiny("deta");
  model->eval();
  torch::NoGradGuard no_grad;
  const Batch b = two_image_batch();
  const DeformableDETROutputs out = model->forward_outputs(b.images);
  ASSERT_EQ(out.logits.size(), 2u);
  const int64_t s = 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2;
  EXPECT_EQ(out.logits[1].sizes(), (at::IntArrayRef{2, 20, 3}));
  EXPECT_EQ(out.boxes[0].sizes(), (at::IntArrayRef{2, 20, 4}));
  EXPECT_EQ(out.enc_logits.sizes(), (at::IntArrayRef{2, s, 3}));
  EXPECT_EQ(out.anchors.sizes(), (at::IntArrayRef{2, s, 4}));
  EXPECT_EQ(out.query_indices.sizes(), (at::IntArrayRef{2, 20}));
  // the decoder starts from the selected first-stage boxes
  EXPECT_TRUE(at::allclose(out.reference_boxes[0],
                           out.enc_boxes[0].index_select(0, out.query_indices[0]), 1e-6, 1e-6));
  // every box is a sigmoid
  EXPECT_TRUE(((out.boxes[1] > 0) & (out.boxes[1] < 1)).all().item<bool>());
  // anchors: w = h = 0.05 * 2^level, invalid (border) anchors all 1
  EXPECT_NEAR(out.anchors[0][0][2].item<double>(), 0.05, 1e-6);
  EXPECT_NEAR(out.anchors[0][s - 1][3].item<double>(), 0.4, 1e-6);
  const auto fwd = model->forward_network(b.images);
  ASSERT_EQ(fwd.size(), 2u);
  EXPECT_TRUE(fwd[0].equal(out.logits[1]));
}

// Outputs of a 2-image, 2-layer, 4-query model built by hand.
DeformableDETROutputs hand_outputs() {
  DeformableDETROutputs out;
  const at::Tensor ref = at::tensor({0.3f, 0.3f, 0.2f, 0.2f, 0.31f, 0.3f, 0.2f, 0.2f, 0.7f, 0.7f,
                                     0.1f, 0.1f, 0.5f, 0.5f, 0.9f, 0.9f})
                             .view({1, 4, 4})
                             .repeat({2, 1, 1});
  out.reference_boxes = ref;
  // layer 0 predicts the reference boxes; layer 1 moves every box far from the GT
  out.boxes = {ref.clone(), at::full({2, 4, 4}, 0.05f)};
  out.logits = {at::zeros({2, 4, 2}), at::zeros({2, 4, 2})};
  return out;
}

TEST(Deta, Stage2AssignsOnTheDecoderInputBoxesForEveryLayer) {
  auto model = tiny("{type: deta, stage2: {pos_fraction: 1.0}}");
  const DeformableDETROutputs out = hand_outputs();
  const std::vector<at::Tensor> gt = {at::tensor({0.3f, 0.3f, 0.2f, 0.2f}).view({1, 4}),
                                      at::tensor({0.7f, 0.7f, 0.1f, 0.1f}).view({1, 4})};
  const std::vector<at::Tensor> labels = {at::tensor({int64_t{1}}), at::tensor({int64_t{0}})};
  for (int64_t layer = 0; layer < 2; ++layer) {
    const auto pairs = model->assign_decoder(out, layer, gt, labels);
    // image 0: queries 0 (IoU 1) and 1 (IoU 0.9); image 1: query 2 — whatever layer 1 predicts
    EXPECT_TRUE(std::get<0>(at::sort(pairs[0].pred)).equal(at::tensor({int64_t{0}, int64_t{1}})))
        << layer;
    EXPECT_TRUE(pairs[1].pred.equal(at::tensor({int64_t{2}}))) << layer;
  }
}

TEST(Deta, HungarianMatchesEachLayerOnItsOwnPredictions) {
  auto model = tiny("hungarian");
  DeformableDETROutputs out = hand_outputs();
  // layer 1: query 3 now sits on image 0's GT
  out.boxes[1][0][3] = at::tensor({0.3f, 0.3f, 0.2f, 0.2f});
  const std::vector<at::Tensor> gt = {at::tensor({0.3f, 0.3f, 0.2f, 0.2f}).view({1, 4}),
                                      at::tensor({0.7f, 0.7f, 0.1f, 0.1f}).view({1, 4})};
  const std::vector<at::Tensor> labels = {at::tensor({int64_t{1}}), at::tensor({int64_t{0}})};
  EXPECT_EQ(model->assign_decoder(out, 0, gt, labels)[0].pred.item<int64_t>(), 0);
  EXPECT_EQ(model->assign_decoder(out, 1, gt, labels)[0].pred.item<int64_t>(), 3);
}

TEST(Deta, LossesPerLayerAndEncoder) {
  for (const char* a : {"deta", "hungarian"}) {
    auto model = tiny(a);
    model->train();
    const auto losses = model->losses(two_image_batch());
    for (const char* n :
         {"loss_cls", "loss_bbox", "loss_giou", "loss_cls_0", "loss_bbox_0", "loss_giou_0",
          "loss_cls_enc", "loss_bbox_enc", "loss_giou_enc", "num_pos", "num_pos_enc"}) {
      ASSERT_TRUE(losses.count(n)) << a << " " << n;
      EXPECT_TRUE(std::isfinite(losses.at(n).item<double>())) << a << " " << n;
    }
    EXPECT_FALSE(losses.count("loss_cls_1")) << a;
    if (std::string(a) == "hungarian") {
      EXPECT_EQ(losses.at("num_pos").item<double>(), 3.0);  // one query per GT
      EXPECT_EQ(losses.at("num_pos_enc").item<double>(), 3.0);
    } else {
      EXPECT_GE(losses.at("num_pos").item<double>(), 3.0);  // low-quality matches at least
    }
  }
}

std::vector<std::string> loss_names(DeformableDETR& model) {
  std::vector<std::string> names;
  for (const auto& [n, v] : model.losses(two_image_batch())) {
    if (n.rfind("loss", 0) == 0) names.push_back(n);
  }
  return names;
}

TEST(Deta, TrainingStepsLowerTheLossesForBothAssigners) {
  for (const char* a : {"deta", "hungarian", "{type: deta, max_k: null}"}) {
    auto model = tiny(a);
    const Batch batch = two_image_batch();
    model->train();
    const auto names = loss_names(*model);
    torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3));
    std::vector<double> totals;
    for (int it = 0; it < 12; ++it) {
      at::manual_seed(it);
      const auto losses = model->losses(batch);
      at::Tensor total = at::zeros({});
      for (const auto& n : names) total = total + losses.at(n);
      totals.push_back(total.item<double>());
      opt.zero_grad();
      total.backward();
      opt.step();
    }
    ASSERT_TRUE(std::isfinite(totals.back())) << a;
    EXPECT_LT(totals.back(), 0.8 * totals.front())
        << a << ": " << totals.front() << " -> " << totals.back();
  }
}

TEST(Deta, PredictDetaRunsNmsHungarianKeepsTheTop100) {
  const Batch b = two_image_batch();
  {
    auto model = tiny("deta");
    model->eval();
    EXPECT_EQ(model->duplicate_removal()->type, "nms");
    EXPECT_DOUBLE_EQ(model->duplicate_removal()->iou_threshold, 0.7);
    EXPECT_EQ(model->test_cfg().pre_nms_top_k, 10000);
    const auto dets = model->predict(b);
    ASSERT_EQ(dets.size(), 2u);
    for (const auto& d : dets) {
      EXPECT_LE(d.boxes.size(0), 100);
      EXPECT_GT(d.boxes.size(0), 0);
      EXPECT_TRUE((d.scores.slice(0, 1) <= d.scores.slice(0, 0, -1)).all().item<bool>());
      const at::Tensor iou = generalized_box_iou(d.boxes, d.boxes);  // >= IoU
      for (int64_t i = 0; i < d.boxes.size(0); ++i) {
        for (int64_t j = i + 1; j < d.boxes.size(0); ++j) {
          if (d.labels[i].item<int64_t>() != d.labels[j].item<int64_t>()) continue;
          const at::Tensor pair = at::stack({d.boxes[i], d.boxes[j]});
          const double v = (generalized_box_iou(pair, pair)[0][1].item<double>());
          (void)iou;
          ASSERT_LE(v, 0.7 + 1e-6);  // GIoU <= IoU <= 0.7 after NMS
        }
      }
    }
  }
  {
    auto model = tiny("hungarian");
    model->eval();
    EXPECT_EQ(model->duplicate_removal()->type, "none");
    const auto dets = model->predict(b);
    for (const auto& d : dets) EXPECT_EQ(d.boxes.size(0), 20 * 3);  // all (query, class) pairs
    // the same top-100 through test_cfg, capped at 10
    auto capped = tiny("hungarian", "test_cfg: {pre_nms_top_k: 10, max_per_img: 10}");
    capped->eval();
    EXPECT_EQ(capped->predict(b)[0].boxes.size(0), 10);
  }
}

TEST(Deta, BoxesAreUnclippedAndMappedToTheOriginalImage) {
  // DETR's post-processing scales the normalised boxes by the original size without clipping
  auto model = tiny("hungarian");
  model->eval();
  torch::NoGradGuard no_grad;
  Batch b = two_image_batch();
  b.metas[0].original_hw = {256, 256};
  b.metas[0].scale_x = b.metas[0].scale_y = 0.5;
  const auto out = model->forward_outputs(b.images);
  const auto dets = model->predict(b);
  const at::Tensor prob = out.logits.back()[0].sigmoid().reshape(-1);
  const auto top = prob.topk(1);
  const int64_t q = std::get<1>(top).item<int64_t>() / 3;
  const at::Tensor expect = box_cxcywh_to_xyxy(out.boxes.back()[0][q]) * 256.0;
  EXPECT_TRUE(at::allclose(dets[0].boxes[0], expect, 1e-4, 1e-3))
      << dets[0].boxes[0] << " vs " << expect;
}

TEST(Deta, ConfigErrorsNameTheKeyPath) {
  const auto has = [](const std::string& err, const std::string& part) {
    return err.find(part) != std::string::npos;
  };
  std::string e = build_error(tiny_yaml("voting"));
  EXPECT_TRUE(has(e, "m.yaml") && has(e, "assigner") && has(e, "'hungarian' or 'deta'")) << e;
  e = build_error(tiny_yaml("{type: deta, max_k: 0}"));
  EXPECT_TRUE(has(e, "max_k") && has(e, "positive integer or null")) << e;
  e = build_error(tiny_yaml("{type: deta, stage1: {pos_fraction: 2}}"));
  EXPECT_TRUE(has(e, "stage1") && has(e, "pos_fraction")) << e;
  e = build_error(tiny_yaml("{type: hungarian, cost_giou: -1}"));
  EXPECT_TRUE(has(e, "cost_giou")) << e;
  e = build_error(tiny_yaml("deta", "query_selection: best"));
  EXPECT_TRUE(has(e, "query_selection") && has(e, "'topk' or 'deta'")) << e;
  std::string y = tiny_yaml("deta");
  y.replace(y.find("d_model: 32"), 11, "d_model: 48");
  e = build_error(y);
  EXPECT_TRUE(has(e, "transformer.d_model") && has(e, "multiple of 32")) << e;
  y = tiny_yaml("deta");
  y.replace(y.find("num_queries: 20"), 15, "num_queries: 0");
  e = build_error(y);
  EXPECT_TRUE(has(e, "m.yaml") && has(e, "num_queries: expected > 0")) << e;
  e = build_error(tiny_yaml("deta", "losss: {}"));
  EXPECT_TRUE(has(e, "losss")) << e;
  e = build_error(tiny_yaml("deta", "test_cfg: {clip: maybe}"));
  EXPECT_TRUE(has(e, "test_cfg.clip")) << e;
  EXPECT_EQ(build_error(tiny_yaml("{type: deta, max_k: null, stage2: {pos_iou_thr: 0.7, "
                                  "neg_iou_thr: 0.7}}",
                                  "query_selection: {type: topk}")),
            "");
  // more queries than encoder positions: an error at run time naming both
  y = tiny_yaml("deta");
  y.replace(y.find("num_queries: 20"), 15, "num_queries: 1000");
  at::manual_seed(0);
  auto model = DetectorRegistry().build(Config::parse(y, "m.yaml"));
  e = test_util::error_of([&] { model->losses(two_image_batch()); });
  EXPECT_TRUE(has(e, "1000 queries") && has(e, "340 positions")) << e;
}

TEST(Deta, SinePositionEmbeddingIsDetrsNormalisedForm) {
  // 1 image, 2 x 3 map, last column padding: x counts 1, 2 over a valid width of 2
  at::Tensor mask = at::zeros({1, 2, 3}, at::kBool);
  mask.select(2, 2).fill_(true);
  const at::Tensor pos = sine_position_embedding(mask, 4);  // [1, 8, 2, 3]
  ASSERT_EQ(pos.sizes(), (at::IntArrayRef{1, 8, 2, 3}));
  const double two_pi = 6.283185307179586;
  const double y = (2 - 0.5) / (2 + 1e-6) * two_pi;  // row 1
  const double x = (2 - 0.5) / (2 + 1e-6) * two_pi;  // column 1
  const double d1 = std::pow(10000.0, 2.0 * 1 / 4);  // dim_t for channels 2, 3
  // channels: y: sin(y / 1), cos(y / 1), sin(y / d1), cos(y / d1), then x likewise
  EXPECT_NEAR(pos[0][0][1][1].item<double>(), std::sin(y), 1e-5);
  EXPECT_NEAR(pos[0][1][1][1].item<double>(), std::cos(y), 1e-5);
  EXPECT_NEAR(pos[0][3][1][1].item<double>(), std::cos(y / d1), 1e-5);
  EXPECT_NEAR(pos[0][6][1][1].item<double>(), std::sin(x / d1), 1e-5);
  // proposal embedding: 4 coordinates x num_feats, on sigmoid(unact) * 2 pi
  const at::Tensor p = proposal_position_embedding(at::zeros({1, 1, 4}), 4);
  ASSERT_EQ(p.sizes(), (at::IntArrayRef{1, 1, 16}));
  EXPECT_NEAR(p[0][0][4].item<double>(), std::sin(0.5 * two_pi), 1e-5);
  EXPECT_NEAR(p[0][0][7].item<double>(), std::cos(0.5 * two_pi / d1), 1e-5);
}

TEST(Deta, CustomKeysSetEachGroupsLearningRate) {
  auto model = tiny("deta");
  const Config cfg = Config::parse(
      "{type: AdamW, lr: 2.0e-4, weight_decay: 1.0e-4, paramwise: {custom_keys: "
      "{backbone: {lr_mult: 0.1}, sampling_offsets: {lr_mult: 0.1}, "
      "encoder.layers.0.self_attn.sampling_offsets: {lr_mult: 0.5, decay_mult: 0.0}}}}",
      "o.yaml");
  const auto opt = build_optimizer(cfg, *model);
  // each parameter's group lr / weight decay
  std::map<const void*, std::pair<double, double>> by_param;
  const auto lrs = group_lrs(*opt);
  const auto wds = group_weight_decays(*opt);
  for (size_t g = 0; g < opt->param_groups().size(); ++g) {
    for (const auto& p : opt->param_groups()[g].params()) {
      by_param[p.unsafeGetTensorImpl()] = {lrs[g], wds[g]};
    }
  }
  const auto params = model->named_parameters();
  auto lr_of = [&](const std::string& n) { return by_param.at(params[n].unsafeGetTensorImpl()); };
  EXPECT_NEAR(lr_of("backbone.0.body.layer2.0.conv1.weight").first, 2e-5, 1e-12);
  EXPECT_NEAR(lr_of("transformer.decoder.layers.0.cross_attn.sampling_offsets.weight").first, 2e-5,
              1e-12);
  // the longest matching key wins
  EXPECT_NEAR(lr_of("transformer.encoder.layers.0.self_attn.sampling_offsets.bias").first, 1e-4,
              1e-12);
  EXPECT_EQ(lr_of("transformer.encoder.layers.0.self_attn.sampling_offsets.bias").second, 0.0);
  EXPECT_NEAR(lr_of("transformer.level_embed").first, 2e-4, 1e-12);
  EXPECT_NEAR(lr_of("class_embed.0.weight").second, 1e-4, 1e-12);
  const std::string e = test_util::error_of([&] {
    build_optimizer(
        Config::parse("{type: AdamW, paramwise: {custom_keys: {backbone: {lr: 1}}}}", "o.yaml"),
        *model);
  });
  EXPECT_NE(e.find("custom_keys.backbone"), std::string::npos) << e;
}

Sample sample_of(int64_t h, int64_t w, std::vector<std::array<float, 4>> boxes) {
  Sample s;
  s.image = cv::Mat(static_cast<int>(h), static_cast<int>(w), CV_8UC3, cv::Scalar(10, 20, 30));
  s.boxes = std::move(boxes);
  s.labels.assign(s.boxes.size(), 1);
  s.meta.original_hw = s.meta.input_hw = s.meta.padded_hw = {h, w};
  return s;
}

TEST(DetrTransforms, ResizeFollowsDetrsSizeRule) {
  const auto resize = [](int64_t h, int64_t w, const std::string& yaml) {
    Sample s = sample_of(h, w, {{10, 20, 30, 40}});
    Rng rng({0});
    TransformRegistry().build(Config::parse(yaml, "t.yaml"))->apply(s, rng);
    return std::make_pair(s.meta.input_hw, s.boxes[0]);
  };
  // 480 x 640 -> short 800: 800 x int(800 * 640 / 480) = 800 x 1066
  auto r = resize(480, 640, "{type: DetrResize, sizes: [800], max_size: 1333}");
  EXPECT_EQ(r.first, (std::array<int64_t, 2>{800, 1066}));
  EXPECT_FLOAT_EQ(r.second[2], 30.f * 1066.f / 640.f);
  // 300 x 1000: 800 / 300 * 1000 > 1333 -> short = round(1333 * 300 / 1000) = 400
  EXPECT_EQ(resize(300, 1000, "{type: DetrResize, sizes: [800], max_size: 1333}").first,
            (std::array<int64_t, 2>{400, 1333}));
  // portrait, no max: w = 800, h = int(800 * 1000 / 600) = 1333
  EXPECT_EQ(resize(1000, 600, "{type: DetrResize, sizes: [800]}").first,
            (std::array<int64_t, 2>{1333, 800}));
}

TEST(DetrTransforms, RandomSizeCropDropsBoxesLeftEmpty) {
  const auto crop = TransformRegistry().build(
      Config::parse("{type: DetrRandomSizeCrop, min_size: 40, max_size: 60}", "t.yaml"));
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Sample s = sample_of(100, 100, {{0, 0, 100, 100}, {98, 98, 100, 100}});
    Rng rng({seed});
    crop->apply(s, rng);
    const int64_t h = s.meta.input_hw[0], w = s.meta.input_hw[1];
    EXPECT_TRUE(h >= 40 && h <= 60 && w >= 40 && w <= 60);
    EXPECT_EQ(s.image.rows, h);
    ASSERT_GE(s.boxes.size(), 1u);  // the full-image box always survives, as the whole crop
    EXPECT_EQ(s.boxes[0],
              (std::array<float, 4>{0, 0, static_cast<float>(w), static_cast<float>(h)}));
    EXPECT_EQ(s.boxes.size(), s.labels.size());
  }
  const std::string e = test_util::error_of([&] {
    Sample s = sample_of(30, 100, {});
    Rng rng({0});
    crop->apply(s, rng);
  });
  EXPECT_NE(e.find("smaller than min_size 40"), std::string::npos) << e;
}

}  // namespace
}  // namespace setdet
