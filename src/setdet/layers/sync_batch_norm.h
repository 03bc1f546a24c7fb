// BatchNorm2d whose training statistics are those of the global batch, over every data-parallel
// process (torch.nn.SyncBatchNorm's semantics): each rank's per-channel count, mean and centred
// sum of squares are combined in one all-reduce (Chan et al.'s pairwise update, in float64), the
// running statistics take the global mean and unbiased variance, and the backward all-reduces
// sum(dy) and sum(dy * (x - mean)) so the input gradient is that of the global batch. Weight and
// bias gradients stay local (the gradient reducer averages them). In one process, and in eval
// mode, it is exactly torch::nn::BatchNorm2d; state_dict names are BatchNorm2d's, so checkpoints
// move freely between the two. Computes in float32 for bfloat16 / float16 input (autocast).
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

namespace setdet {

// Not a subclass of torch::nn::BatchNorm2dImpl: libtorch_cpu does not export the template base's
// virtual members that a subclass's vtables need. Same fields as BatchNorm2dImpl instead.
class SyncBatchNormImpl : public torch::nn::Cloneable<SyncBatchNormImpl> {
 public:
  explicit SyncBatchNormImpl(const torch::nn::BatchNormOptions& options);
  explicit SyncBatchNormImpl(int64_t num_features)
      : SyncBatchNormImpl(torch::nn::BatchNormOptions(num_features)) {}

  void reset() override;
  // x: [N, C, H, W], any memory format
  at::Tensor forward(const at::Tensor& x);

  torch::nn::BatchNormOptions options;
  at::Tensor weight, bias;                                    // parameters (affine)
  at::Tensor running_mean, running_var, num_batches_tracked;  // buffers (track_running_stats)
};
TORCH_MODULE(SyncBatchNorm);

}  // namespace setdet
