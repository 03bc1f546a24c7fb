// Data-parallel training as a hook (registered by `setdet train` when WORLD_SIZE > 1): at the
// start it sets every rank's weights and buffers to rank 0's (DDP's start-of-training sync,
// after any resume); before each training forward it prepares the gradient reducer, and after
// the forward (before OptimizerHook's backward) it arms the reducer's autograd hooks, so the
// backward all-reduces the gradients in buckets as they become ready; before an evaluation it
// sends rank 0's buffers (BatchNorm statistics of a non-synchronised BatchNorm differ per rank).
#pragma once

#include <memory>

#include "setdet/distributed/gradient_reducer.h"
#include "setdet/engine/hooks.h"

namespace setdet {

class DataParallelHook : public Hook {
 public:
  // HIGH (30): before OptimizerHook (40) in after_train_iter.
  DataParallelHook(dist::ProcessGroup& group, std::unique_ptr<dist::GradientReducer> reducer)
      : Hook(priority::kHigh), group_(group), reducer_(std::move(reducer)) {}
  std::string name() const override { return "DataParallelHook"; }
  void before_run(Runner& runner) override;
  void before_train_iter(Runner& runner) override;
  void after_train_iter(Runner& runner) override;
  void before_val_epoch(Runner& runner) override;

 private:
  dist::ProcessGroup& group_;
  std::unique_ptr<dist::GradientReducer> reducer_;
};

}  // namespace setdet
