// Batches from a Dataset, prepared by background worker threads.
//
// Config node (e.g. `data.train`):
//   {batch_size: 16, num_workers: 2, prefetch: 2, shuffle: true, drop_last: false, seed: 0,
//    size_divisor: 32, dataset: {type: CocoDataset, ...}}
// and optionally `sampler: {type: ClassBalancedSampler, cap: 1000}` (data/sampler.h), whose order
// for (seed, epoch) replaces the shuffle.
//
// Data-parallel processes (data/distributed_sampler.h): with options.shard, batch_size is per
// process and batch b is this rank's part of the epoch's global batch b.
//
// Determinism: epoch e visits the dataset in the order shuffled by Rng(seed, e) (identity if
// shuffle is off) and item i's augmentation draws from Rng(seed, e, i), so a batch depends only
// on (seed, epoch, batch index), never on num_workers or thread timing. Worker k prepares whole
// batches (decode, transforms, collation) and at most num_workers * prefetch batches are ready
// or in flight ahead of the consumer; next() only waits when the workers are behind.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/data/dataset.h"
#include "setdet/data/distributed_sampler.h"
#include "setdet/data/image_io.h"
#include "setdet/data/sampler.h"
#include "setdet/structures/batch.h"

namespace setdet {

struct LoaderOptions {
  int64_t batch_size = 2;
  int64_t num_workers = 2;  // 0: batches are prepared by next() on the calling thread
  int64_t prefetch = 2;     // batches in flight per worker
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  int64_t size_divisor = 32;  // the batch's H and W are rounded up to a multiple of this
  DataShard shard;            // this process's share of each global batch
  bool pad_shards = true;     // a short last global batch still gives every rank an image
  std::shared_ptr<const DataSampler> sampler;  // null: shuffle (or not) by `shuffle`
};

// Stacks samples into a Batch: images [B, 3, H, W] float32 with H, W the largest sample sizes
// rounded up to size_divisor, zero-padded at the bottom and right (8-bit images are converted
// to float as they are). Uses no ATen kernels, so it is cheap on worker threads.
Batch collate(const std::vector<Sample>& samples, int64_t size_divisor);

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Reads the loader keys of `cfg` and builds cfg.dataset; `default_seed` applies when the node
  // has no `seed`.
  static std::unique_ptr<DataLoader> from_config(const Config& cfg, uint64_t default_seed = 0,
                                                 const DataShard& shard = {},
                                                 bool pad_shards = true);

  int64_t batches_per_epoch() const;
  // Starts epoch `epoch` at batch `first_batch` (stopping any epoch in progress).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch, nullopt at its end. Rethrows a worker's error (e.g. an
  // image that cannot be decoded, named by path).
  std::optional<Batch> next();

  // Dataset indices in the order epoch `epoch` visits them (before drop_last).
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Batch `batch` of epoch `epoch`, prepared on the calling thread.
  Batch make_batch(int64_t epoch, int64_t batch) const;

  const Dataset& dataset() const { return *dataset_; }
  std::shared_ptr<const Dataset> dataset_ptr() const { return dataset_; }
  const LoaderOptions& options() const { return options_; }

 private:
  struct Ready {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };

  void stop_workers();
  void worker_loop();
  void produce_batches();

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  ScopedOpenCvSerial opencv_serial_;  // parallelism comes from the workers

  // current epoch
  bool started_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  int64_t num_batches_ = 0;
  int64_t next_yield_ = 0;

  // worker state, guarded by mutex_
  std::mutex mutex_;
  std::condition_variable space_cv_;  // workers wait for room in the prefetch window
  std::condition_variable ready_cv_;  // next() waits for its batch
  int64_t next_claim_ = 0;
  bool stop_ = false;
  std::map<int64_t, Ready> ready_;
  std::exception_ptr failure_;  // a worker failed outside a batch: next() rethrows it
  std::vector<std::thread> workers_;
};

}  // namespace setdet
