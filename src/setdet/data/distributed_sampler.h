// Data-parallel sharding of an epoch, MMDetection's semantics: `batch_size` is per process, and
// batch b of an epoch is the global batch of the W * batch_size consecutive positions
// [b W B, min((b + 1) W B, n)) of the epoch order, split in rank order into W contiguous parts
// whose sizes differ by at most one, the larger first (B each for a full batch). Concatenating the
// parts of ranks 0..W-1 gives exactly, in the same order, the batch one process with batch W B
// draws, so a seed means the same data at any world size.
//
// A last global batch of k < W images leaves ranks k..W-1 empty: with `pad` (training, where every
// rank must step together) they take the epoch's positions 0, 1, ... instead, as torch's
// DistributedSampler pads; without it (evaluation) they get nothing.
#pragma once

#include <cstdint>
#include <vector>

namespace setdet {

struct DataShard {
  int64_t rank = 0;
  int64_t world_size = 1;
};

// Global batches in an epoch of n images.
int64_t global_batches(int64_t n, int64_t batch_size, int64_t world_size, bool drop_last);

// Epoch positions of `shard`'s part of global batch `batch`, in order (may be empty when !pad).
std::vector<int64_t> shard_positions(int64_t n, int64_t batch_size, const DataShard& shard,
                                     int64_t batch, bool pad);

}  // namespace setdet
