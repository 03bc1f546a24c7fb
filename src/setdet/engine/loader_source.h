// The data pipeline's DataLoader seen as the runner's BatchSource.
#pragma once

#include <memory>

#include "setdet/data/loader.h"
#include "setdet/engine/batch_source.h"

namespace setdet {

class LoaderBatchSource : public BatchSource {
 public:
  explicit LoaderBatchSource(std::shared_ptr<DataLoader> loader) : loader_(std::move(loader)) {}
  int64_t batches_per_epoch() const override { return loader_->batches_per_epoch(); }
  void start_epoch(int64_t epoch, int64_t first_batch) override {
    loader_->start_epoch(epoch, first_batch);
  }
  std::optional<Batch> next() override { return loader_->next(); }
  int64_t global_batch_size() const override {
    return loader_->options().batch_size * loader_->options().shard.world_size;
  }
  DataLoader& loader() { return *loader_; }

 private:
  std::shared_ptr<DataLoader> loader_;
};

}  // namespace setdet
