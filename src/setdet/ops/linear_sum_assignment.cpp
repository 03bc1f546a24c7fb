// setdet::linear_sum_assignment: optimal rectangular assignment with the same optimal total as
// scipy.optimize.linear_sum_assignment (see setdet/core/match/lsa.h).
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "setdet/core/match/lsa.h"
#include "setdet/ops/tensor_args.h"

namespace setdet::ops {
namespace {

// cost [N, M] -> (int64 rows [min(N, M)] ascending, int64 cols [min(N, M)]) minimising the
// total cost.
std::tuple<at::Tensor, at::Tensor> linear_sum_assignment_kernel(const at::Tensor& cost) {
  constexpr const char* kOp = "setdet::linear_sum_assignment";
  TORCH_CHECK(cost.defined(), kOp, ": cost must be a tensor, got None");
  TORCH_CHECK(cost.dim() == 2, kOp, ": cost must be a 2-D tensor of shape [N, M], got shape ",
              cost.sizes());
  check_floating(cost, kOp, "cost");
  const int64_t n = cost.size(0), m = cost.size(1);
  if (n == 0 || m == 0) return {empty_indices(cost.device()), empty_indices(cost.device())};
  const at::Tensor c = cpu_contiguous(cost);
  Assignment a;
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), kOp, [&] {
    check_finite<scalar_t>(c, kOp, "cost");
    a = call_core(kOp, [&] {
      return linear_sum_assignment(c.data_ptr<scalar_t>(), static_cast<size_t>(n),
                                   static_cast<size_t>(m));
    });
  });
  TORCH_INTERNAL_ASSERT(a.rows.size() == a.cols.size() &&
                        a.rows.size() == static_cast<size_t>(std::min(n, m)));
  return {to_tensor(a.rows, at::kLong, cost.device()), to_tensor(a.cols, at::kLong, cost.device())};
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeExplicitAutograd, m) {
  m.impl("linear_sum_assignment", linear_sum_assignment_kernel);
}

TORCH_LIBRARY_IMPL(setdet, Autograd, m) {
  m.impl("linear_sum_assignment", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace setdet::ops
