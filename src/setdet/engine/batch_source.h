// What the runner and the evaluator read batches from. The data pipeline's loader is adapted to
// this interface (apps/setdet/train.cpp); tests use in-memory sources.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "setdet/structures/batch.h"

namespace setdet {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Batches in one epoch (> 0).
  virtual int64_t batches_per_epoch() const = 0;
  // Starts epoch `epoch` at its batch `first_batch`. The sample order (and any random
  // augmentation) must depend only on the source's seed and `epoch`, so a run resumed at
  // (epoch, first_batch) sees the same batches as an uninterrupted one.
  virtual void start_epoch(int64_t epoch, int64_t first_batch) = 0;
  // The next batch of the current epoch; nullopt once the epoch is exhausted.
  virtual std::optional<Batch> next() = 0;
  // Images in a full batch over every data-parallel process (0: unknown). A run resumed with
  // another global batch size continues at the same image of the epoch.
  virtual int64_t global_batch_size() const { return 0; }
};

}  // namespace setdet
