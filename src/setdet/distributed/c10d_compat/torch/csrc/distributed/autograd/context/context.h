// Debian's libtorch-dev 1.13 ships c10d/reducer.hpp but not the distributed-autograd header it
// includes for two names: the callback type of DistAutogradContext (a static_assert compares it
// with the Reducer's) and ContextPtr (a shared_ptr member of Reducer::RpcContext). This file
// declares exactly those; setdet never uses distributed autograd (RPC), so no other member of
// the class is needed, and the Reducer's layout (a shared_ptr and an atomic raw pointer) does not
// depend on the class's definition.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch::distributed::autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace torch::distributed::autograd
