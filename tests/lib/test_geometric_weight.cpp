// log_geometric_weight: the relation module's geometric term (boxes -> relative geometry ->
// sinusoid embedding -> W_G, relu, clamp, log) in the fused CPU kernel, against the composite
// LibTorch path in float64 and float32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "setdet/layers/geometric_weight.h"

namespace setdet {
namespace {

struct Case {
  int64_t n, m, d, h;
};

// n random float32 boxes on a 256 px image, with the degenerate ones a detector produces: repeats
// of one box, zero-area boxes, a box with x2 < x1 - 1 (its size clamps to 1e-3) and boxes that
// share a centre coordinate (|dx| / w clamps to 1e-3).
at::Tensor random_boxes(int64_t n) {
  const auto xy = at::rand({n, 2}) * 200.0;
  const auto wh = at::rand({n, 2}) * 60.0 + 0.5;
  at::Tensor b = at::cat({xy, xy + wh}, 1);
  if (n >= 6) {
    b[1].copy_(b[0]);
    b[2].copy_(b[0]);
    b[3].copy_(at::tensor({50.0f, 60.0f, 49.0f, 59.0f}));  // w = h = 0
    b[4].copy_(at::tensor({80.0f, 80.0f, 70.0f, 75.0f}));  // w, h < 0
    b[5].copy_(at::stack({b[0][0], at::scalar_tensor(20.0f), b[0][2], at::scalar_tensor(25.0f)}));
    // box 5: the centre x of box 0
  }
  return b;
}

struct Errors {
  double y = 0, w = 0, b = 0;  // max abs errors: log weight (unclamped entries), dW, db
};

// The float64 composite from the same float32 boxes is the reference; the fused kernel and the
// float32 composite are both measured against it.
void expect_matches_reference(const Case& c, uint64_t seed) {
  at::manual_seed(seed);
  const auto boxes = random_boxes(c.n);
  const auto w0 = at::randn({c.h, c.d}) * 0.2;
  const auto b0 = at::randn({c.h}) * 0.3 + 0.2;

  const auto emb64 = geometry_embedding(boxes.to(at::kDouble), c.m, c.d);
  const auto z64 = at::linear(emb64, w0.to(at::kDouble), b0.to(at::kDouble)).permute({2, 0, 1});
  // entries within 0.05 of the clamp are excluded: there the derivative 1 / z and the log
  // amplify the float32 rounding of the embedding's arguments (|arg| up to 690) in any order
  const auto away = (z64.abs() > 0.05);
  const auto g = at::randn({c.h, c.n, c.m}) * away.to(at::kFloat);

  const auto run = [&](bool fused, at::ScalarType dtype) {
    const auto w = w0.to(dtype).clone().requires_grad_();  // fresh leaves: no shared .grad
    const auto b = b0.to(dtype).clone().requires_grad_();
    const auto y = fused ? log_geometric_weight(boxes, c.m, w, b)
                         : log_geometric_weight_reference(
                               geometry_embedding(boxes.to(dtype), c.m, c.d), w, b);
    (y * g.to(dtype)).sum().backward();
    return std::make_tuple(y.detach().to(at::kDouble), w.grad().to(at::kDouble),
                           b.grad().to(at::kDouble));
  };
  const auto [y64, gw64, gb64] = run(false, at::kDouble);
  const auto error = [&](bool fused) {
    const auto [y, gw, gb] = run(fused, at::kFloat);
    EXPECT_EQ(y.sizes(), (at::IntArrayRef{c.h, c.n, c.m}));
    const auto dy = (y - y64).abs() * away.to(at::kDouble);
    Errors e;
    e.y = dy.max().item<double>();
    e.w = (gw - gw64).abs().max().item<double>();
    e.b = (gb - gb64).abs().max().item<double>();
    // clamped entries: log(1e-6) in both
    const auto clamped = z64 < -0.05;
    if (clamped.any().item<bool>()) {
      EXPECT_LT((y - std::log(1e-6)).abs().masked_select(clamped).max().item<double>(), 1e-5);
    }
    return e;
  };
  const Errors fused = error(true), composite = error(false);
  const double wscale = gw64.abs().max().item<double>(), bscale = gb64.abs().max().item<double>();
  // no worse than LibTorch's own float32 composite (plus a small absolute slack)
  EXPECT_LE(fused.y, 2.0 * composite.y + 2e-5)
      << "n " << c.n << " m " << c.m << " d " << c.d << " h " << c.h << ": fused " << fused.y
      << ", composite " << composite.y;
  EXPECT_LE(fused.w, 2.0 * composite.w + 1e-5 * wscale) << "h " << c.h << " fused " << fused.w;
  EXPECT_LE(fused.b, 2.0 * composite.b + 1e-5 * bscale) << "h " << c.h << " fused " << fused.b;
  EXPECT_LT(fused.w, 1e-2 * wscale);
}

TEST(LogGeometricWeight, MatchesTheCompositePathForwardAndBackward) {
  // 16 and 32 heads (one and two modules), 12 and 3 (padded to the 4-head tile), key counts that
  // do not fill the 16-key blocks, d_g from 8 to 64, GT boxes as queries only (m < n), the demo's
  // size (312 RoIs, 300 keys, two modules' 32 heads)
  const std::vector<Case> cases{{37, 29, 64, 16}, {5, 3, 64, 8},  {40, 20, 32, 32},
                                {9, 7, 16, 12},   {1, 1, 8, 16},  {6, 5, 8, 3},
                                {24, 24, 64, 4},  {312, 300, 64, 32}};
  // every instruction set this CPU has (AVX-512, AVX2, the baseline)
  const std::string best = geometric_weight_isa();
  for (const std::string isa : {"avx512", "avx2", "baseline"}) {
    limit_geometric_weight_isa(isa);
    if (geometric_weight_isa() != isa) continue;
    SCOPED_TRACE(isa);
    uint64_t seed = 0;
    for (const auto& c : cases) expect_matches_reference(c, seed++);
  }
  limit_geometric_weight_isa("avx512");
  EXPECT_EQ(geometric_weight_isa(), best);
}

TEST(LogGeometricWeight, MatchesHandComputedValuesInFloat32) {
  // W_G: head 0 sums the embedding, head 1 its negation (clamped where the sum is positive).
  const auto w = at::cat({at::ones({1, 8}), -at::ones({1, 8})}, 0);
  const auto boxes = at::tensor({0.0f, 0.0f, 9.0f, 19.0f, 30.0f, 10.0f, 49.0f, 19.0f}).view({2, 4});
  const auto y = log_geometric_weight(boxes, 2, w, at::zeros({2}));
  // query 0, key 1: w, h with +1 (10, 20) and (20, 10), centres (4.5, 9.5), (39.5, 14.5); dim 8 =
  // 4 coordinates x 1 frequency: sin(100 g), cos(100 g) per coordinate
  const double g[4] = {std::log(35.0 / 10.0), std::log(5.0 / 20.0), std::log(10.0 / 20.0),
                       std::log(20.0 / 10.0)};
  double sum = 0.0;
  for (double v : g) sum += std::sin(100.0 * v) + std::cos(100.0 * v);
  ASSERT_GT(sum, 0.01);
  EXPECT_NEAR(y[0][0][1].item<double>(), std::log(sum), 1e-4);
  EXPECT_NEAR(y[1][0][1].item<double>(), std::log(1e-6), 1e-5);
  // query = key: log(max(0, 1e-3)) twice, log 1 twice
  const double self = 2 * (std::sin(100.0 * std::log(1e-3)) + std::cos(100.0 * std::log(1e-3))) + 2;
  EXPECT_NEAR(y[0][1][1].item<double>(), std::log(std::max(self, 1e-6)), 1e-3);
  EXPECT_NEAR(y[1][1][1].item<double>(), std::log(std::max(-self, 1e-6)), 1e-3);
}

TEST(LogGeometricWeight, ResultDoesNotDependOnTheThreadCountsScheduling) {
  const int threads = at::get_num_threads();
  at::manual_seed(3);
  const auto boxes = random_boxes(50);
  const auto w0 = at::randn({16, 64}) * 0.2;
  const auto b0 = at::randn({16});
  const auto z = at::linear(geometry_embedding(boxes, 45, 64), w0, b0).permute({2, 0, 1});
  const auto g = at::randn({16, 50, 45}) * (z.abs() > 0.05).to(at::kFloat);  // as above
  std::vector<at::Tensor> ys, wg;
  for (int t : {2, 2, 1}) {
    at::set_num_threads(t);
    const auto w = w0.clone().requires_grad_();
    const auto b = b0.clone().requires_grad_();
    const auto y = log_geometric_weight(boxes, 45, w, b);
    (y * g).sum().backward();
    ys.push_back(y.detach());
    wg.push_back(w.grad());
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(ys[0], ys[2]));  // the forward is per pair: any thread count
  EXPECT_TRUE(at::equal(wg[0], wg[1]))   // same thread count: bit-equal
      << (wg[0] - wg[1]).abs().max().item<float>();
  EXPECT_TRUE(at::allclose(wg[0], wg[2], 1e-4, 1e-4));  // another one: summation order only
}

TEST(LogGeometricWeight, ClampedProductsGetNoGradientAndBoxesWithGradientUseTheComposite) {
  const auto boxes = random_boxes(7);
  const auto w = at::full({8, 16}, -1.0).requires_grad_();
  const auto b = at::full({8}, -20.0).requires_grad_();  // every product negative
  const auto y = log_geometric_weight(boxes, 7, w, b);
  EXPECT_TRUE(at::allclose(y, at::full_like(y, std::log(1e-6f))));
  y.sum().backward();
  EXPECT_EQ(w.grad().abs().max().item<float>(), 0.0f);
  EXPECT_EQ(b.grad().abs().max().item<float>(), 0.0f);

  // denormal upstream gradients (a saturated softmax's) count as zero
  const auto w3 = at::zeros({8, 16}).requires_grad_();
  const auto g_tiny = at::randn({8, 7, 7}) * 1e-40;
  ASSERT_GT(g_tiny.abs().max().item<float>(), 0.0f);
  (log_geometric_weight(boxes, 7, w3, at::ones({8})) * g_tiny).sum().backward();
  EXPECT_EQ(w3.grad().abs().max().item<float>(), 0.0f);

  const auto bg = boxes.clone().requires_grad_();
  log_geometric_weight(bg, 5, at::randn({8, 16}) * 0.1, at::ones({8})).sum().backward();
  ASSERT_TRUE(bg.grad().defined());
  EXPECT_TRUE(at::isfinite(bg.grad()).all().item<bool>());

  // no keys, no queries
  EXPECT_EQ(log_geometric_weight(boxes, 0, w, b).sizes(), (at::IntArrayRef{8, 7, 0}));
  EXPECT_EQ(log_geometric_weight(boxes.narrow(0, 0, 0), 0, w, b).sizes(),
            (at::IntArrayRef{8, 0, 0}));
  EXPECT_THROW(log_geometric_weight(boxes, 8, w, b), c10::Error);           // more keys than boxes
  EXPECT_THROW(log_geometric_weight(boxes, 7, at::randn({8, 12}), {}), c10::Error);  // d_g % 8
  EXPECT_THROW(log_geometric_weight(boxes, 7, w, at::zeros({3})), c10::Error);
}

}  // namespace
}  // namespace setdet
