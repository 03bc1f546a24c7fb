// setdet::num_threads / set_num_threads: the thread count of setdet_core's parallel_for, which
// every setdet op uses (all cores by default; independent of torch.get_num_threads()).
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "setdet/core/parallel.h"

namespace setdet::ops {
namespace {

int64_t num_threads_kernel() { return setdet::num_threads(); }

// n <= 0 restores the default (all cores). Returns the count now in force.
int64_t set_num_threads_kernel(int64_t n) {
  setdet::set_num_threads(static_cast<int>(std::max<int64_t>(std::min<int64_t>(n, 4096), 0)));
  return setdet::num_threads();
}

}  // namespace

TORCH_LIBRARY_IMPL(setdet, CompositeImplicitAutograd, m) {
  m.impl("num_threads", num_threads_kernel);
  m.impl("set_num_threads", set_num_threads_kernel);
}

}  // namespace setdet::ops
