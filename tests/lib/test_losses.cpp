#include <gtest/gtest.h>
#include <torch/torch.h>

#include "setdet/config/config.h"
#include "setdet/losses/focal_loss.h"
#include "setdet/losses/iou_loss.h"

namespace setdet {
namespace {

at::Tensor logits() {
  return torch::tensor({{-3.0f, -0.5f, 0.0f, 0.7f, 2.5f}, {1.2f, -1.7f, 4.0f, -6.0f, 0.3f}});
}
at::Tensor targets() {
  return torch::tensor({{0.f, 1.f, 0.f, 1.f, 0.f}, {1.f, 0.f, 1.f, 0.f, 0.f}});
}
at::Tensor boxes_a() {
  return torch::tensor({{0.f, 0.f, 10.f, 10.f}, {5.f, 5.f, 15.f, 20.f}, {2.f, 3.f, 4.f, 9.f}});
}
at::Tensor boxes_b() {
  return torch::tensor({{1.f, 1.f, 11.f, 9.f}, {20.f, 20.f, 30.f, 30.f}, {0.f, 0.f, 3.f, 3.5f}});
}

void expect_close(const at::Tensor& got, const std::vector<double>& want, double tol = 1e-6) {
  const auto flat = got.to(at::kDouble).reshape(-1);
  ASSERT_EQ(flat.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(flat[i].item<double>(), want[i], tol * std::max(1.0, std::abs(want[i]))) << i;
  }
}

// Golden values: torchvision 0.14.1, torchvision.ops.sigmoid_focal_loss(logits, targets,
// alpha, gamma, reduction="none") on the inputs above.
TEST(FocalLoss, MatchesTorchvision) {
  expect_close(
      sigmoid_focal_loss(logits(), targets(), 0.25, 2.0),
      {8.196242561098188e-05, 0.09435289353132248, 0.12996509671211243, 0.011097634211182594,
       1.6518527269363403, 0.003526718122884631, 0.003002469427883625, 1.4678996649308829e-06,
       1.1351998452369116e-08, 0.21144279837608337});
  expect_close(sigmoid_focal_loss(logits(), targets(), -1.0, 1.5),
               {0.0005018176743760705, 0.47836536169052124, 0.24506452679634094, 0.07706268876791,
                2.2910826206207275, 0.029320983216166496, 0.010185958817601204,
                4.378105222713202e-05, 3.0439019838013337e-07, 0.37197038531303406},
               1e-5);
}

// Golden gradient: torchvision 0.14.1, d/dlogits of sigmoid_focal_loss(..., 0.25, 2, "sum").
TEST(FocalLoss, GradientMatchesTorchvision) {
  auto x = logits().requires_grad_();
  sigmoid_focal_loss(x, targets(), 0.25, 2.0).sum().backward();
  expect_close(
      x.grad(),
      {0.0002361537772230804, -0.13153794407844543, 0.22371509671211243, -0.02396368607878685,
       0.8425523042678833, -0.008521394804120064, 0.007841484621167183, -4.337653990660328e-06,
       3.398582038016684e-08, 0.32212984561920166},
      1e-5);
}

TEST(FocalLoss, AvgFactorWeightAndLossWeight) {
  FocalLoss loss(0.25, 2.0, 2.0);
  // torchvision 0.14.1 sigmoid_focal_loss(..., reduction="sum") = 2.105323553085327
  EXPECT_NEAR(loss(logits(), targets(), {}, 4.0).item<double>(), 2.0 * 2.105323553085327 / 4.0,
              1e-6);
  const auto w = torch::tensor({{1.f}, {0.f}});
  const double first_row =
      sigmoid_focal_loss(logits(), targets()).select(0, 0).sum().item<double>();
  EXPECT_NEAR(loss(logits(), targets(), w, 1.0).item<double>(), 2.0 * first_row, 1e-6);
}

// Golden values: torchvision 0.14.1 torchvision.ops.generalized_box_iou(boxes_a, boxes_b).
TEST(GIoU, PairwiseMatchesTorchvision) {
  expect_close(generalized_box_iou(boxes_a(), boxes_b()),
               {0.6484848856925964, -0.7777777910232544, 0.10499999672174454, -0.10905905812978745,
                -0.6000000238418579, -0.4650000035762787, 0.15000000596046448, -0.8518518805503845,
                -0.36616161465644836});
}

// Golden values: torchvision 0.14.1 generalized_box_iou_loss(boxes_a, boxes_b, reduction="none").
TEST(GIoU, AlignedLossMatchesTorchvision) {
  expect_close(giou_loss(boxes_a(), boxes_b()),
               {0.35151511430740356, 1.600000023841858, 1.366161584854126});
  const auto same = giou_loss(boxes_a(), boxes_a());
  expect_close(same, {0.0, 0.0, 0.0});
}

TEST(GIoU, LossEqualsOneMinusPairwiseDiagonal) {
  torch::manual_seed(3);
  const auto xy = torch::rand({20, 2}) * 50, wh = torch::rand({20, 2}) * 30 + 1;
  const auto xy2 = torch::rand({20, 2}) * 50, wh2 = torch::rand({20, 2}) * 30 + 1;
  const auto a = torch::cat({xy, xy + wh}, 1), b = torch::cat({xy2, xy2 + wh2}, 1);
  EXPECT_TRUE(
      torch::allclose(giou_loss(a, b), 1 - generalized_box_iou(a, b).diagonal(), 1e-5, 1e-5));
}

TEST(IoULoss, IsMinusLogIoU) {
  const auto a = torch::tensor({{0.f, 0.f, 10.f, 10.f}});
  const auto b = torch::tensor({{0.f, 0.f, 10.f, 5.f}});
  expect_close(iou_log_loss(a, b), {-std::log(0.5)});
}

TEST(BCEWithLogitsLoss, MatchesTheFormula) {
  BCEWithLogitsLoss loss;
  const auto x = torch::tensor({0.3f, -2.0f}), t = torch::tensor({1.0f, 0.25f});
  const double want = (std::log1p(std::exp(-0.3)) + (0.5 + std::log1p(std::exp(-2.0)))) / 2.0;
  EXPECT_NEAR(loss(x, t, {}, 2.0).item<double>(), want, 1e-6);
}

TEST(LossRegistry, BuildsAndRejectsUnknownKeys) {
  auto focal = LossRegistry().build(
      Config::parse("{l: {type: FocalLoss, alpha: 0.5, gamma: 1.0, loss_weight: 3}}")["l"]);
  auto* f = dynamic_cast<FocalLoss*>(focal.get());
  ASSERT_NE(f, nullptr);
  EXPECT_DOUBLE_EQ(f->alpha(), 0.5);
  EXPECT_DOUBLE_EQ(f->gamma(), 1.0);
  EXPECT_DOUBLE_EQ(f->loss_weight(), 3.0);
  try {
    LossRegistry().build(Config::parse("{l: {type: GIoULoss, weight: 2}}", "c.yaml")["l"]);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'l.weight'"), std::string::npos) << e.what();
  }
  try {
    LossRegistry().build(Config::parse("{l: {type: SmoothL1}}", "c.yaml")["l"]);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown loss 'SmoothL1'"), std::string::npos) << e.what();
  }
}

TEST(Losses, ShapeMismatchIsAnError) {
  EXPECT_THROW(sigmoid_focal_loss(torch::zeros({2, 3}), torch::zeros({2, 4})), c10::Error);
  EXPECT_THROW(giou_loss(torch::zeros({2, 4}), torch::zeros({3, 4})), c10::Error);
  EXPECT_THROW(generalized_box_iou(torch::zeros({2, 3}), torch::zeros({3, 4})), c10::Error);
}

}  // namespace
}  // namespace setdet
