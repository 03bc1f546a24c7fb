// log_geometric_weight: the relation module's fused geometric term (linear, relu, clamp, log) on
// CPU against the composite LibTorch path in float64.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "setdet/layers/geometric_weight.h"

namespace setdet {
namespace {

struct Case {
  int64_t n, m, d, h;
};

// Forward and the gradients of W and b for an upstream gradient g, from float32 inputs, against
// the reference in float64; about a third of the products are negative (relu / clamp region).
void expect_matches_reference(const Case& c, uint64_t seed) {
  at::manual_seed(seed);
  const auto emb = at::randn({c.n, c.m, c.d});
  const auto w = (at::randn({c.h, c.d}) * 0.2).requires_grad_();
  const auto b = (at::randn({c.h}) * 0.3 + 0.2).requires_grad_();
  // the upstream gradient is zero where a product is within 0.05 of the clamp: there the
  // derivative 1 / z is ill-conditioned in any float32 summation order
  const auto z64 = at::linear(emb.to(at::kDouble), w.detach().to(at::kDouble),
                              b.detach().to(at::kDouble))
                       .permute({2, 0, 1});
  const auto g = at::randn({c.h, c.n, c.m}) * (z64.abs() > 0.05).to(at::kFloat);

  const auto y = log_geometric_weight(emb, w, b);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{c.h, c.n, c.m}));
  (y * g).sum().backward();

  const auto w64 = w.detach().to(at::kDouble).requires_grad_();
  const auto b64 = b.detach().to(at::kDouble).requires_grad_();
  const auto y64 = log_geometric_weight_reference(emb.to(at::kDouble), w64, b64);
  (y64 * g.to(at::kDouble)).sum().backward();

  EXPECT_TRUE(at::allclose(y.to(at::kDouble), y64, 1e-4, 1e-4))
      << "h " << c.h << " max diff " << (y.to(at::kDouble) - y64).abs().max().item<double>();
  const double wscale = w64.grad().abs().max().item<double>();
  const double bscale = b64.grad().abs().max().item<double>();
  EXPECT_LT((w.grad().to(at::kDouble) - w64.grad()).abs().max().item<double>(), 1e-4 * wscale)
      << "h " << c.h;
  EXPECT_LT((b.grad().to(at::kDouble) - b64.grad()).abs().max().item<double>(), 1e-4 * bscale)
      << "h " << c.h;
}

TEST(LogGeometricWeight, MatchesTheCompositePathForwardAndBackward) {
  // 16 heads (the module's default), the other vectorised widths 8 and 32, a scalar-path 12;
  // pair counts that do not fill the 512-pair blocks, d not a multiple of 8
  const std::vector<Case> cases{{37, 29, 64, 16}, {5, 3, 64, 8}, {20, 40, 32, 32},
                                {9, 7, 16, 12},   {1, 1, 8, 16}, {6, 5, 12, 8}};
  uint64_t seed = 0;
  for (const auto& c : cases) expect_matches_reference(c, seed++);
}

TEST(LogGeometricWeight, ResultDoesNotDependOnTheThreadCountsScheduling) {
  const int threads = at::get_num_threads();
  at::manual_seed(3);
  const auto emb = at::randn({50, 60, 64});
  const auto w0 = at::randn({16, 64}) * 0.2;
  const auto b0 = at::randn({16});
  const auto z = at::linear(emb, w0, b0).permute({2, 0, 1});
  const auto g = at::randn({16, 50, 60}) * (z.abs() > 0.05).to(at::kFloat);  // as above
  std::vector<at::Tensor> wg;
  for (int t : {2, 2, 1}) {
    at::set_num_threads(t);
    const auto w = w0.clone().requires_grad_();
    const auto b = b0.clone().requires_grad_();
    (log_geometric_weight(emb, w, b) * g).sum().backward();
    wg.push_back(w.grad());
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(wg[0], wg[1]))  // same thread count: bit-equal
      << (wg[0] - wg[1]).abs().max().item<float>();
  EXPECT_TRUE(at::allclose(wg[0], wg[2], 1e-4, 1e-4));  // another one: summation order only
}

TEST(LogGeometricWeight, ClampedProductsGetNoGradientAndAnEmbeddingWithGradientUsesTheComposite) {
  const auto emb = at::ones({2, 3, 8});
  const auto w = at::full({8, 8}, -1.0).requires_grad_();  // every product negative
  const auto b = at::zeros({8}).requires_grad_();
  const auto y = log_geometric_weight(emb, w, b);
  EXPECT_TRUE(at::allclose(y, at::full_like(y, std::log(1e-6f))));
  y.sum().backward();
  EXPECT_EQ(w.grad().abs().max().item<float>(), 0.0f);
  EXPECT_EQ(b.grad().abs().max().item<float>(), 0.0f);

  // denormal upstream gradients (a saturated softmax's) count as zero
  const auto emb2 = at::rand({6, 7, 8}) + 0.5;
  const auto w3 = (at::rand({8, 8}) * 0.5).requires_grad_();
  const auto g_tiny = at::randn({8, 6, 7}) * 1e-40;
  ASSERT_GT(g_tiny.abs().max().item<float>(), 0.0f);
  (log_geometric_weight(emb2, w3, {}) * g_tiny).sum().backward();
  EXPECT_EQ(w3.grad().abs().max().item<float>(), 0.0f);

  const auto e = at::randn({4, 4, 8}).requires_grad_();
  const auto w2 = at::randn({8, 8});
  log_geometric_weight(e, w2, at::ones({8})).sum().backward();
  ASSERT_TRUE(e.grad().defined());
  EXPECT_THROW(log_geometric_weight(at::randn({2, 2, 8}), at::randn({8, 4}), {}), c10::Error);
}

}  // namespace
}  // namespace setdet
