#include "setdet/data/distributed_sampler.h"

#include <algorithm>

#include "setdet/core/error.h"

namespace setdet {

int64_t global_batches(int64_t n, int64_t batch_size, int64_t world_size, bool drop_last) {
  SETDET_CHECK(n >= 0 && batch_size > 0 && world_size > 0, "global_batches: n ", n, ", batch_size ",
               batch_size, ", world_size ", world_size);
  const int64_t g = batch_size * world_size;
  return drop_last ? n / g : (n + g - 1) / g;
}

std::vector<int64_t> shard_positions(int64_t n, int64_t batch_size, const DataShard& shard,
                                     int64_t batch, bool pad) {
  const int64_t w = shard.world_size;
  SETDET_CHECK(w > 0 && shard.rank >= 0 && shard.rank < w, "shard_positions: rank ", shard.rank,
               " of a world of ", w);
  SETDET_CHECK(batch >= 0 && batch < global_batches(n, batch_size, w, false),
               "shard_positions: batch ", batch, " out of range (", n, " images, batch ",
               batch_size, " x ", w, " processes)");
  const int64_t start = batch * batch_size * w;
  const int64_t k = std::min(batch_size * w, n - start);
  // numpy.array_split's parts: the first k % w ranks take one image more
  const int64_t q = k / w, rem = k % w, r = shard.rank;
  const int64_t begin = start + r * q + std::min(r, rem);
  const int64_t size = q + (r < rem ? 1 : 0);
  std::vector<int64_t> positions;
  for (int64_t p = begin; p < begin + size; ++p) positions.push_back(p);
  // only when k < w are parts empty: ranks k..w-1, which take epoch positions 0, 1, ...
  if (positions.empty() && pad) positions.push_back((r - k) % n);
  return positions;
}

}  // namespace setdet
