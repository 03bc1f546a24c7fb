#include "setdet/layers/sync_batch_norm.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "setdet/distributed/process_group.h"

namespace setdet {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor per_channel(const at::Tensor& v) { return v.view({1, -1, 1, 1}); }

dist::ProcessGroup* group_from(AutogradContext* ctx) {
  // The group is process-lived; its address travels through saved_data as an integer.
  return reinterpret_cast<dist::ProcessGroup*>(ctx->saved_data["group"].toInt());
}

struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  // weight / bias undefined: no affine transform. running_* undefined: no running statistics.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var,
                            double eps, double momentum, dist::ProcessGroup* group) {
    const at::Tensor xf = x.to(at::kFloat);
    const int64_t c = xf.size(1);
    const double n = static_cast<double>(xf.numel() / c);
    // Local mean and centred sum of squares, combined over ranks in float64:
    // N = sum n_r, mean = sum n_r m_r / N, M2 = sum (M2_r + n_r m_r^2) - N mean^2.
    const at::Tensor local_mean = xf.mean({0, 2, 3});
    const at::Tensor local_m2 = (xf - per_channel(local_mean)).square().sum({0, 2, 3});
    const at::Tensor lm = local_mean.to(at::kDouble);
    at::Tensor packed = at::cat(
        {lm * n, local_m2.to(at::kDouble) + lm.square() * n, at::full({1}, n, lm.options())});
    group->all_reduce_sum(packed);
    const double total = packed[2 * c].item<double>();
    TORCH_CHECK(total > 1, "SyncBatchNorm: expected more than 1 value per channel over all ",
                group->world_size(), " processes, got ", total, " (input ", x.sizes(), ")");
    const at::Tensor mean_d = packed.narrow(0, 0, c) / total;
    const at::Tensor var_d = (packed.narrow(0, c, c) / total - mean_d.square()).clamp_min(0);
    const at::Tensor mean = mean_d.to(at::kFloat);
    const at::Tensor invstd = (var_d + eps).rsqrt().to(at::kFloat);
    if (running_mean.defined()) {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()), momentum);
      running_var.mul_(1 - momentum)
          .add_((var_d * (total / (total - 1))).to(running_var.dtype()), momentum);
    }
    at::Tensor scale = invstd;
    if (weight.defined()) scale = scale * weight.to(at::kFloat);
    at::Tensor y = (xf - per_channel(mean)) * per_channel(scale);
    if (bias.defined()) y = y + per_channel(bias.to(at::kFloat));
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["total"] = total;
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    return y.to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& mean = saved[2];
    const at::Tensor& invstd = saved[3];
    const double total = ctx->saved_data["total"].toDouble();
    const at::Tensor dy = grads[0].to(at::kFloat);
    const at::Tensor xmu = x.to(at::kFloat) - per_channel(mean);
    const at::Tensor sum_dy = dy.sum({0, 2, 3});
    const at::Tensor sum_dy_xmu = (dy * xmu).sum({0, 2, 3});
    at::Tensor grad_weight, grad_bias, grad_x;
    if (weight.defined()) {
      grad_weight = (sum_dy_xmu * invstd).to(weight.scalar_type());
      grad_bias = sum_dy.to(weight.scalar_type());
    }
    // d loss / d x_i over every rank's loss: dy_i - mean(dy) - xmu_i invstd^2 mean(dy xmu),
    // the means over the global batch.
    const int64_t c = mean.size(0);
    at::Tensor packed = at::cat({sum_dy, sum_dy_xmu}).to(at::kDouble);
    group_from(ctx)->all_reduce_sum(packed);
    const at::Tensor mean_dy = (packed.narrow(0, 0, c) / total).to(at::kFloat);
    const at::Tensor mean_dy_xmu = (packed.narrow(0, c, c) / total).to(at::kFloat);
    at::Tensor scale = invstd;
    if (weight.defined()) scale = scale * weight.to(at::kFloat);
    grad_x = ((dy - per_channel(mean_dy) - xmu * per_channel(invstd.square() * mean_dy_xmu)) *
              per_channel(scale))
                 .to(x.scalar_type());
    return {grad_x,       grad_weight,  grad_bias,    at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(const torch::nn::BatchNormOptions& options_)
    : options(options_) {
  reset();
}

void SyncBatchNormImpl::reset() {
  const int64_t c = options.num_features();
  TORCH_CHECK(c > 0, "SyncBatchNorm: num_features must be positive, got ", c);
  if (options.affine()) {
    weight = register_parameter("weight", at::ones({c}));
    bias = register_parameter("bias", at::zeros({c}));
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", at::zeros({c}));
    running_var = register_buffer("running_var", at::ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", at::zeros({}, at::kLong));
  }
}

at::Tensor SyncBatchNormImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.num_features(),
              "SyncBatchNorm: expected input [N, ", options.num_features(), ", H, W], got ",
              x.sizes());
  // BatchNorm2d's update factor: momentum, or the cumulative average when momentum is unset
  double momentum = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats()) {
    num_batches_tracked.add_(1);
    if (!options.momentum()) momentum = 1.0 / num_batches_tracked.item<double>();
  }
  dist::ProcessGroup* group = dist::current_process_group();
  if (!is_training() || group == nullptr || group->world_size() == 1) {
    return at::batch_norm(x, weight, bias, running_mean, running_var,
                          is_training() || !options.track_running_stats(), momentum, options.eps(),
                          at::globalContext().userEnabledCuDNN());
  }
  return SyncBatchNormFunction::apply(x, weight, bias, running_mean, running_var, options.eps(),
                                      momentum, group);
}

}  // namespace setdet
