#include <gtest/gtest.h>
#include <torch/torch.h>

#include "setdet/config/config.h"
#include "setdet/losses/balanced_l1_loss.h"
#include "setdet/losses/focal_loss.h"
#include "setdet/losses/iou_loss.h"
#include "setdet/losses/smooth_l1_loss.h"
#include "testing.h"

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

// Inputs of the golden values below, which tests/python/gen_loss_goldens.py computes with
// torch 1.13 in float64 (torch.nn.functional for L1 / smooth L1; for the others the reference
// formulas of the papers as MMDetection 2.x / 3.x defines them, written out in that script).
at::Tensor pred_deltas() {
  return torch::tensor({{0.1, -0.5, 1.3, 2.0}, {0.0, 0.9, -1.2, 0.05}, {3.0, -2.5, 0.4, -0.02}},
                       torch::kDouble);
}
at::Tensor target_deltas() {
  return torch::tensor({{0.0, 0.2, -0.1, 2.5}, {0.0, 1.0, 0.3, -0.05}, {0.5, 0.5, 0.45, 0.0}},
                       torch::kDouble);
}
at::Tensor pred_boxes() {
  return torch::tensor(
      {{0.0, 0.0, 10.0, 10.0}, {5.0, 5.0, 15.0, 20.0}, {2.0, 3.0, 4.0, 9.0}, {1.0, 1.0, 7.0, 5.0}},
      torch::kDouble);
}
at::Tensor target_boxes() {
  return torch::tensor(
      {{1.0, 1.0, 11.0, 9.0}, {20.0, 20.0, 30.0, 30.0}, {0.0, 0.0, 3.0, 3.5}, {2.0, 2.0, 4.0, 4.0}},
      torch::kDouble);
}

// torch.nn.functional.l1_loss(reduction="none")
TEST(L1Loss, MatchesTorch) {
  expect_close(L1Loss().elementwise(pred_deltas(), target_deltas()),
               {0.1, 0.7, 1.4, 0.5, 0, 0.1, 1.5, 0.1, 2.5, 3, 0.05, 0.02}, 1e-12);
}

// torch.nn.functional.smooth_l1_loss(reduction="none", beta)
TEST(SmoothL1Loss, MatchesTorch) {
  expect_close(SmoothL1Loss(1.0).elementwise(pred_deltas(), target_deltas()),
               {0.005, 0.245, 0.9, 0.125, 0, 0.005, 1, 0.005, 2, 2.5, 0.00125, 0.0002}, 1e-12);
  expect_close(SmoothL1Loss(0.11).elementwise(pred_deltas(), target_deltas()),
               {0.045454545454545463, 0.64499999999999991, 1.3450000000000002, 0.445, 0,
                0.045454545454545435, 1.445, 0.045454545454545463, 2.445, 2.945,
                0.011363636363636359, 0.0018181818181818182},
               1e-12);
  // beta 0 is L1.
  EXPECT_TRUE(torch::allclose(SmoothL1Loss(0.0).elementwise(pred_deltas(), target_deltas()),
                              L1Loss().elementwise(pred_deltas(), target_deltas())));
}

// Libra R-CNN Eq. (8)-(9), MMDetection's balanced_l1_loss (alpha 0.5, gamma 1.5).
TEST(BalancedL1Loss, MatchesTheReferenceFormula) {
  expect_close(
      BalancedL1Loss().elementwise(pred_deltas(), target_deltas()),
      {0.031353085651471047, 0.65235581145180188, 1.6785935447368838, 0.40056750690532461, 0,
       0.031353085651471005, 1.8285935447368837, 0.031353085651471047, 3.3285935447368837,
       4.0785935447368837, 0.0093035938187072884, 0.0017035750599925792},
      1e-12);
  expect_close(BalancedL1Loss(0.5, 1.5, 0.5).elementwise(pred_deltas(), target_deltas()),
               {0.069796246931227879, 0.87859354473688378, 1.9285935447368838, 0.57859354473688396,
                0, 0.069796246931227809, 2.0785935447368837, 0.069796246931227879,
                3.5785935447368837, 4.3285935447368837, 0.029661687034404804, 0.010533444536373874},
               1e-12);
  auto p = pred_deltas().requires_grad_();
  BalancedL1Loss().elementwise(p, target_deltas()).sum().backward();
  expect_close(
      p.grad(),
      {0.53382797234132429, -1.3322189588885438, 1.5, -1.1777200855068983, 0, -0.53382797234132418,
       -1.5, 0.53382797234132429, 1.5, -1.5, -0.33501011267242703, -0.16166119848582647},
      1e-12);
}

// MMDetection's IoULoss modes on max(aligned IoU, 1e-6) (third pair: no overlap).
TEST(IoULoss, LinearSquareAndLogModes) {
  expect_close(iou_loss(pred_boxes(), target_boxes(), IoULossMode::kLinear),
               {0.33333333333333337, 0.99999899999999997, 0.97727272727272729, 0.83333333333333337},
               1e-12);
  expect_close(iou_loss(pred_boxes(), target_boxes(), IoULossMode::kSquare),
               {0.55555555555555558, 0.99999999999900002, 0.99948347107438018, 0.97222222222222221},
               1e-12);
  expect_close(iou_loss(pred_boxes(), target_boxes(), IoULossMode::kLog),
               {0.40546510810816444, 13.815510557964274, 3.784189633918261, 1.791759469228055},
               1e-12);
  const auto a = torch::tensor({{0.f, 0.f, 10.f, 10.f}});
  const auto b = torch::tensor({{0.f, 0.f, 10.f, 5.f}});
  expect_close(IoULoss().elementwise(a, b), {-std::log(0.5)});
}

// Bounded IoU loss (Tychsen-Smith & Petersson 2018) as MMDetection's bounded_iou_loss (beta 0.2,
// eps 1e-3): per box the x, y, w, h terms.
TEST(BoundedIoULoss, MatchesTheReferenceFormula) {
  expect_close(
      bounded_iou_loss(pred_boxes(), target_boxes()),
      {0.23338888425964496, 3.9052736205731797e-08, 2.4995000749852811e-08, 0.10007999200079984,
       0.9, 0.9, 2.4995000749852811e-08, 0.23337777481501229, 0.9, 0.9, 0.23355548150616454,
       0.31676387268788542, 0.9, 6.2437546843768157e-07, 0.56672221296450598, 0.40012496875781067},
      1e-10);
  auto p = pred_boxes().requires_grad_();
  auto t = target_boxes().requires_grad_();
  BoundedIoULoss().elementwise(p, t).sum().backward();
  expect_close(
      p.grad(),
      {-0.13887268442186937, -0.079984002399680051, -0.13887268942036965, 0.079984002399680051,
       2.4992501499705797e-09, -0.044438519111058443, -2.4992501499705797e-09, 0.044438519111058443,
       0.49986115276466475, -0.097189822914866622, -0.16658336572917071, 0.097189822914866622,
       0.19440047395545662, -0.12493752342968992, 0.30547455728673278, 0.12493752342968992},
      1e-9);
  EXPECT_FALSE(t.grad().defined());  // the target is detached, as MMDetection's
  // Identical boxes: every cost is ~0 (w / (w + eps) for the sizes).
  EXPECT_LT(bounded_iou_loss(pred_boxes(), pred_boxes()).max().item<double>(), 1e-6);
}

TEST(Losses, RowWeightsForPerCoordinateLosses) {
  const SmoothL1Loss loss(1.0, 2.0);
  const auto per_element = loss.elementwise(pred_deltas(), target_deltas());
  const auto row_weight = torch::tensor({1.0, 0.0, 3.0}, torch::kDouble);
  const double want = 2.0 * (per_element[0].sum() + 3.0 * per_element[2].sum()).item<double>() / 4;
  EXPECT_NEAR(loss(pred_deltas(), target_deltas(), row_weight, 4.0).item<double>(), want, 1e-12);
  EXPECT_NEAR(loss(pred_deltas(), target_deltas(), row_weight.unsqueeze(1).expand({3, 4}), 4.0)
                  .item<double>(),
              want, 1e-12);
  EXPECT_NE(test_util::error_of([&] {
              loss(pred_deltas(), target_deltas(), torch::ones({4}, torch::kDouble));
            }).find("loss: weight of shape [4] does not fit the element-wise loss of shape [3, 4]"),
            std::string::npos);
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

TEST(LossRegistry, BuildsTheRegressionLosses) {
  auto build = [](const std::string& yaml) {
    return LossRegistry().build(Config::parse("{l: " + yaml + "}", "c.yaml")["l"]);
  };
  const auto p = pred_deltas(), t = target_deltas();
  EXPECT_TRUE(torch::allclose((*build("{type: L1Loss, loss_weight: 2}"))(p, t),
                              2 * L1Loss().elementwise(p, t).sum()));
  auto smooth = build("{type: SmoothL1Loss, beta: 0.11}");
  ASSERT_NE(dynamic_cast<SmoothL1Loss*>(smooth.get()), nullptr);
  EXPECT_DOUBLE_EQ(dynamic_cast<SmoothL1Loss*>(smooth.get())->beta(), 0.11);
  EXPECT_TRUE(torch::allclose((*build("{type: BalancedL1Loss, beta: 0.5}"))(p, t),
                              BalancedL1Loss(0.5, 1.5, 0.5).elementwise(p, t).sum()));
  const auto a = pred_boxes(), b = target_boxes();
  auto* square = dynamic_cast<IoULoss*>(build("{type: IoULoss, mode: square}").get());
  ASSERT_NE(square, nullptr);
  EXPECT_EQ(square->mode(), IoULossMode::kSquare);
  EXPECT_TRUE(torch::allclose((*build("{type: IoULoss, linear: true}"))(a, b),
                              iou_loss(a, b, IoULossMode::kLinear).sum()));
  EXPECT_TRUE(
      torch::allclose((*build("{type: IoULoss}"))(a, b), iou_loss(a, b, IoULossMode::kLog).sum()));
  EXPECT_TRUE(torch::allclose((*build("{type: BoundedIoULoss, beta: 0.1, loss_weight: 10}"))(a, b),
                              10 * bounded_iou_loss(a, b, 0.1).sum()));
  for (const auto& [yaml, message] : std::vector<std::pair<std::string, std::string>>{
           {"{type: SmoothL1Loss, beta: -1}", "c.yaml: l.beta: expected >= 0, got -1"},
           {"{type: BalancedL1Loss, gamma: 0}", "c.yaml: l.gamma: expected > 0, got 0"},
           {"{type: IoULoss, mode: cubic}", "c.yaml: l.mode: expected linear, square or log"},
           {"{type: IoULoss, linear: true, mode: log}", "linear: true contradicts mode 'log'"},
           {"{type: BoundedIoULoss, eps: 0}", "c.yaml: l.eps: expected > 0, got 0"}}) {
    EXPECT_NE(test_util::error_of([&, y = yaml] { build(y); }).find(message), std::string::npos)
        << yaml;
  }
}

TEST(Losses, ShapeMismatchIsAnError) {
  EXPECT_THROW(sigmoid_focal_loss(torch::zeros({2, 3}), torch::zeros({2, 4})), c10::Error);
  EXPECT_THROW(giou_loss(torch::zeros({2, 4}), torch::zeros({3, 4})), c10::Error);
  EXPECT_THROW(generalized_box_iou(torch::zeros({2, 3}), torch::zeros({3, 4})), c10::Error);
  EXPECT_NE(test_util::error_of([] {
              BalancedL1Loss().elementwise(torch::zeros({2, 4}), torch::zeros({2, 3}));
            }).find("BalancedL1Loss: pred [2, 4] and target [2, 3] must have the same shape"),
            std::string::npos);
  EXPECT_THROW(bounded_iou_loss(torch::zeros({2, 4}), torch::zeros({3, 4})), c10::Error);
}

}  // namespace
}  // namespace setdet
