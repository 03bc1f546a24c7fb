// Positive sample selector (PSS) of FCOS_PSS / ATSS_PSS (Zhou et al., "Object Detection Made
// Simpler by Eliminating Heuristic NMS", Fig. 1, Sec. 3.1.1 and 3.5): num_convs x (conv3x3 +
// GroupNorm + ReLU) on the regression-tower features, then a conv3x3 to one logit map per level,
// shared across levels. With stop_gradient the input features are detached ("stop-grad" of
// Fig. 1), so nothing the PSS head computes sends gradient into the FCOS/ATSS network.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <vector>

#include "setdet/layers/packed_conv2d.h"

namespace setdet {

struct PositiveSampleSelectorOptions {
  explicit PositiveSampleSelectorOptions(int64_t in_channels)
      : in_channels_(in_channels), channels_(in_channels) {}
  TORCH_ARG(int64_t, in_channels);     // width of the regression tower
  TORCH_ARG(int64_t, channels);        // PSS conv width (default: in_channels; 256 in the paper)
  TORCH_ARG(int64_t, num_convs) = 2;   // the paper's best (Table 5)
  TORCH_ARG(int64_t, gn_groups) = 32;  // GroupNorm groups after each conv; 0: no GroupNorm
  TORCH_ARG(bool, stop_gradient) = true;
};

class PositiveSampleSelectorImpl : public torch::nn::Module {
 public:
  explicit PositiveSampleSelectorImpl(const PositiveSampleSelectorOptions& options);
  // reg_features: per level [B, in_channels, H, W]; returns per level [B, 1, H, W] logits "pss".
  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& reg_features);
  const PositiveSampleSelectorOptions& options() const { return options_; }

 private:
  PositiveSampleSelectorOptions options_;
  torch::nn::Sequential tower_{nullptr};
  PackedConv2d pss_logits_{nullptr};
};
TORCH_MODULE(PositiveSampleSelector);

}  // namespace setdet
#include "setdet/layers/packed_conv2d.h"
