#include "setdet/engine/data_parallel_hook.h"

#include "setdet/engine/runner.h"

namespace setdet {

void DataParallelHook::before_run(Runner& runner) {
  dist::broadcast_module_state(runner.model(), group_, /*buffers_only=*/false);
}

void DataParallelHook::before_train_iter(Runner& runner) { reducer_->before_forward(); }

void DataParallelHook::after_train_iter(Runner& runner) {
  reducer_->before_backward(runner.loss());
}

void DataParallelHook::before_val_epoch(Runner& runner) {
  dist::broadcast_module_state(runner.model(), group_, /*buffers_only=*/true);
}

}  // namespace setdet
