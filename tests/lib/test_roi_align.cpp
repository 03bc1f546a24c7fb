#include <gtest/gtest.h>
#include <torch/torch.h>

#include "setdet/layers/roi_align.h"
#include "testing.h"

namespace setdet {
namespace {

// Channel c of a [1, C, H, W] map holds f_c(x, y) = c + 0.5 x - 2 y (x, y: pixel indices).
// Bilinear interpolation reproduces a linear function exactly, and the mean of a bin's regular
// sample grid is the bin centre, so inside the map each output is f_c at its bin centre.
at::Tensor linear_map(int64_t channels, int64_t height, int64_t width) {
  const at::Tensor y = torch::arange(height, torch::kDouble).view({1, 1, height, 1});
  const at::Tensor x = torch::arange(width, torch::kDouble).view({1, 1, 1, width});
  const at::Tensor c = torch::arange(channels, torch::kDouble).view({1, channels, 1, 1});
  return c + 0.5 * x - 2.0 * y;
}

TEST(RoIAlign, LinearMapGivesBinCentres) {
  const at::Tensor input = linear_map(3, 12, 16);
  // aligned: pixel i covers [i, i + 1) in RoI coordinates, so its centre is i + 0.5.
  const at::Tensor rois = torch::tensor({{0.0, 2.0, 3.0, 10.0, 9.0}}, torch::kDouble);
  for (int64_t sampling_ratio : {0, 1, 2, 3}) {
    const at::Tensor out = roi_align(input, rois, 1.0, 3, 4, sampling_ratio, true);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 3, 3, 4}));
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t i = 0; i < 3; ++i) {
        for (int64_t j = 0; j < 4; ++j) {
          const double cx = 2.0 + (j + 0.5) * 2.0 - 0.5, cy = 3.0 + (i + 0.5) * 2.0 - 0.5;
          EXPECT_NEAR(out[0][c][i][j].item<double>(), c + 0.5 * cx - 2.0 * cy, 1e-12)
              << "sampling_ratio " << sampling_ratio << " c " << c << " bin " << i << "," << j;
        }
      }
    }
  }
}

TEST(RoIAlign, GradientFlowsToTheInputThroughAutograd) {
  const at::Tensor input = torch::randn({2, 4, 10, 12}, torch::kDouble).requires_grad_(true);
  // Both RoIs lie inside the map: every bin's bilinear weights sum to 1.
  const at::Tensor rois =
      torch::tensor({{0.0, 4.0, 4.0, 30.0, 20.0}, {1.0, 0.0, 8.0, 16.0, 36.0}}, torch::kDouble);
  const at::Tensor out = roi_align(input, rois, 0.25, 7, 7, 2, false);
  ASSERT_TRUE(out.requires_grad());
  out.sum().backward();
  const at::Tensor grad = input.grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_NEAR(grad.sum().item<double>(), 2 * 4 * 7 * 7, 1e-9);
  EXPECT_NEAR(grad[0].sum().item<double>(), 4 * 7 * 7, 1e-9);
  // RoI 0 spans map rows 1..5 and columns 1..7.5: its samples reach pixel rows 1..5 and columns
  // 1..8, every one of them, and nothing else.
  const at::Tensor inside = grad[0].slice(1, 1, 6).slice(2, 1, 9);
  EXPECT_GT(inside.abs().min().item<double>(), 0.0);
  EXPECT_NEAR(inside.sum().item<double>(), 4 * 7 * 7, 1e-9);

  // The same through torch::autograd::grad, and as the op's linear map: <grad_out, out> equals
  // <grad_in, input> (RoIAlign is linear in its input).
  const at::Tensor x = torch::randn({2, 4, 10, 12}, torch::kDouble).requires_grad_(true);
  const at::Tensor y = roi_align(x, rois, 0.25, 3, 2, 0, true);
  const at::Tensor go = torch::randn_like(y);
  const at::Tensor gx = torch::autograd::grad({y}, {x}, {go})[0];
  EXPECT_NEAR((go * y).sum().item<double>(), (gx * x).sum().item<double>(), 1e-9);
}

TEST(RoIAlign, ChannelsLastGivesTheSameValues) {
  const at::Tensor input = torch::randn({2, 5, 9, 11});
  const at::Tensor rois =
      torch::tensor({{1.0f, -3.0f, 2.0f, 14.0f, 30.0f}, {0.0f, 5.f, 5.f, 6.f, 6.f}});
  const at::Tensor a = roi_align(input, rois, 0.5, 4, 4, 2, false);
  const at::Tensor b =
      roi_align(input.contiguous(at::MemoryFormat::ChannelsLast), rois, 0.5, 4, 4, 2, false);
  EXPECT_TRUE(b.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(a, b.contiguous()));
}

TEST(RoIAlign, BoxesToRois) {
  const at::Tensor a = torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}, {5.0f, 6.0f, 7.0f, 8.0f}});
  const at::Tensor b = torch::zeros({0, 4});
  const at::Tensor c = torch::tensor({{9.0f, 10.0f, 11.0f, 12.0f}});
  const at::Tensor rois = boxes_to_rois({a, b, c});
  EXPECT_TRUE(torch::equal(rois, torch::tensor({{0.0f, 1.0f, 2.0f, 3.0f, 4.0f},
                                                {0.0f, 5.0f, 6.0f, 7.0f, 8.0f},
                                                {2.0f, 9.0f, 10.0f, 11.0f, 12.0f}})));
  EXPECT_EQ(boxes_to_rois({b}).sizes(), (std::vector<int64_t>{0, 5}));
  EXPECT_NE(test_util::error_of([&] {
              boxes_to_rois({a, torch::zeros({2, 5})});
            })
                .find("boxes_to_rois: boxes[1] must be a 2-D tensor of shape [N, 4], got shape "
                      "[2, 5]"),
            std::string::npos);
}

TEST(RoIAlign, BadArgumentsRaiseTheOpsMessage) {
  const std::string message = test_util::error_of([] {
    roi_align(torch::zeros({1, 2, 4, 4}), torch::tensor({{1.0f, 0.f, 0.f, 2.f, 2.f}}), 1.0, 2, 2, 2,
              false);
  });
  EXPECT_NE(message.find("setdet::roi_align: rois[0, 0] must be a batch index, an integer in [0, "
                         "1), got 1"),
            std::string::npos)
      << message;
}

}  // namespace
}  // namespace setdet
