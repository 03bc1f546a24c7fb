// The visual relationship model: shapes, backbone initialisation from a 3-channel detector
// backbone (extra input planes zero), and a short training run that learns a pixel-only
// relationship (the subject is red) on masked union crops.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include "setdet/data/random.h"
#include "setdet/models/backbones/resnet.h"
#include "setdet/vrd/visual_model.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

const char* kBackbone =
    "{type: ResNet, depth: 18, base_channels: 8, in_channels: 5, out_indices: [3]}";

TEST(VrdVisualModel, ForwardShapes) {
  torch::manual_seed(0);
  VisualRelationNet net(Config::parse(kBackbone), 7, std::array<int64_t, 2>{32, 16}, 0.2);
  const at::Tensor logits = net->forward(torch::randn({3, kUnionCropChannels, 64, 64}));
  EXPECT_EQ(logits.sizes(), (at::IntArrayRef{3, 7}));
  EXPECT_NE(error_of([&] {
              net->forward(torch::randn({3, 3, 64, 64}));
            }).find("crops must be [B, 5, S, S]"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              VisualRelationNet(Config::parse(kBackbone), 2, std::array<int64_t, 2>{0, 16}, 0.2);
            }).find("hidden widths must be positive"),
            std::string::npos);
  // dropout is active in training mode only
  net->eval();
  const at::Tensor x = torch::randn({2, kUnionCropChannels, 64, 64});
  EXPECT_TRUE(net->forward(x).equal(net->forward(x)));
}

TEST(VrdVisualModel, BackboneFromAnRgbDetector) {
  torch::manual_seed(1);
  ResNet rgb(ResNetOptions(18).base_channels(8).out_indices({1, 2, 3}));
  NamedTensors source;
  for (const auto& p : rgb->named_parameters())
    source.emplace_back("backbone.body." + p.key(), p.value());
  for (const auto& b : rgb->named_buffers())
    source.emplace_back("backbone.body." + b.key(), b.value());
  VisualRelationNet net(Config::parse(kBackbone), 2, std::array<int64_t, 2>{16, 8}, 0.0);
  const int64_t n = load_backbone_weights("det.pt", source, "backbone.body.", net->backbone());
  EXPECT_EQ(n, static_cast<int64_t>(source.size()));
  std::map<std::string, at::Tensor> mine;
  for (const auto& p : net->backbone().named_parameters()) mine[p.key()] = p.value();
  const at::Tensor conv1 = mine.at("conv1.weight");
  EXPECT_EQ(conv1.size(1), 5);
  EXPECT_TRUE(conv1.narrow(1, 0, 3).equal(rgb->named_parameters()["conv1.weight"]));
  EXPECT_EQ(conv1.narrow(1, 3, 2).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(
      mine.at("layer4.1.conv2.weight").equal(rgb->named_parameters()["layer4.1.conv2.weight"]));

  NamedTensors missing(source.begin() + 1, source.end());
  EXPECT_NE(error_of([&] {
              load_backbone_weights("det.pt", missing, "backbone.body.", net->backbone());
            }).find("det.pt: no tensor 'backbone.body.conv1.weight'"),
            std::string::npos);
  NamedTensors wrong = source;
  wrong[1].second = torch::zeros({3});
  EXPECT_NE(error_of([&] {
              load_backbone_weights("det.pt", wrong, "backbone.body.", net->backbone());
            }).find("det.pt: tensor '" + wrong[1].first + "' has shape [3]"),
            std::string::npos);
}

// Images with two squares; predicate 0: the subject square is red (the other colour is blue);
// predicate 1: the subject is left of the object (both drawn apart).
std::vector<cv::Mat> make_images(std::vector<VisualPair>& pairs, int n, uint64_t seed) {
  std::vector<cv::Mat> images;
  Rng rng({seed});
  for (int i = 0; i < n; ++i) {
    cv::Mat im(64, 64, CV_8UC3, cv::Scalar(40, 40, 40));
    const bool red = rng.bernoulli(0.5), left = rng.bernoulli(0.5);
    const int y1 = static_cast<int>(rng.randint(4, 40)), y2 = static_cast<int>(rng.randint(4, 40));
    const cv::Rect a(left ? 4 : 40, y1, 18, 18), b(left ? 40 : 4, y2, 18, 18);
    im(a).setTo(red ? cv::Scalar(0, 0, 255) : cv::Scalar(255, 0, 0));
    im(b).setTo(cv::Scalar(0, 255, 0));
    images.push_back(im);
    VisualPair p;
    p.image = i;
    p.subject = {static_cast<float>(a.x), static_cast<float>(a.y), static_cast<float>(a.br().x),
                 static_cast<float>(a.br().y)};
    p.object = {static_cast<float>(b.x), static_cast<float>(b.y), static_cast<float>(b.br().x),
                static_cast<float>(b.br().y)};
    p.labels = {static_cast<uint8_t>(red), static_cast<uint8_t>(left)};
    pairs.push_back(p);
  }
  return images;
}

TEST(VrdVisualModel, LearnsAPixelRelationship) {
  torch::manual_seed(2);
  std::vector<VisualPair> train_pairs, test_pairs;
  const auto train_images = make_images(train_pairs, 64, 3);
  const auto test_images = make_images(test_pairs, 32, 4);
  VisualRelationNet net(Config::parse(kBackbone), 2, std::array<int64_t, 2>{32, 16}, 0.2);
  VisualTrainOptions o;
  o.crop.size = 32;
  o.batch_size = 16;
  o.max_iters = 60;
  o.log_interval = 20;
  o.optimizer = Config::parse("{type: AdamW, lr: 3.0e-3, weight_decay: 0.0}");
  o.lr_schedule =
      Config::parse("{type: Cosine, warmup: linear, warmup_iters: 5, min_lr_ratio: 0.1}");
  std::vector<VisualTrainProgress> reports;
  train_visual_model(net, train_images, train_pairs, o,
                     [&](const VisualTrainProgress& p) { reports.push_back(p); });
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports.back().iter, 60);
  EXPECT_EQ(reports.back().epoch, 14);  // 4 batches per epoch
  EXPECT_LT(reports.back().loss, 0.5 * reports.front().loss);
  EXPECT_FALSE(net->is_training());

  const std::vector<float> p = predict_visual(net, test_images, test_pairs, o.crop, 7);
  ASSERT_EQ(p.size(), test_pairs.size() * 2);
  int right = 0;
  for (size_t i = 0; i < test_pairs.size(); ++i) {
    for (int k = 0; k < 2; ++k) right += (p[i * 2 + k] > 0.5f) == (test_pairs[i].labels[k] == 1);
  }
  EXPECT_GE(right, 58) << "of 64 test decisions";
  // inference is deterministic and independent of the batch size
  const std::vector<float> q = predict_visual(net, test_images, test_pairs, o.crop, 32);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], q[i], 1e-5);

  EXPECT_NE(error_of([&] {
              std::vector<VisualPair> bad = train_pairs;
              bad[0].labels = {1};
              train_visual_model(net, train_images, bad, o);
            }).find("a pair has 1 labels for 2 predicates"),
            std::string::npos);
}

}  // namespace
}  // namespace setdet
