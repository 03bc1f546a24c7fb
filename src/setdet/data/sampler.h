// Samplers: the order in which a loader visits its dataset in each epoch, chosen in the loader's
// config node (any training config):
//
//   data.train: {batch_size: 8, sampler: {type: ClassBalancedSampler, cap: 1000}, dataset: ...}
//
// Without a sampler the loader shuffles by (seed, epoch), or keeps the dataset order when
// `shuffle: false`. A sampler's order is a pure function of (dataset, seed, epoch), so runs
// reproduce and resume exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "setdet/config/registry.h"
#include "setdet/data/dataset.h"

namespace setdet {

class DataSampler {
 public:
  virtual ~DataSampler() = default;
  // The dataset indices epoch `epoch` visits: dataset.size() of them, repeats allowed.
  virtual std::vector<int64_t> epoch_order(const Dataset& dataset, uint64_t seed,
                                           int64_t epoch) const = 0;
};

// Builders return a sampler ready for any dataset (checked when the order is drawn).
SETDET_DEFINE_REGISTRY(DataSamplerRegistry, std::shared_ptr<DataSampler>, "data sampler")

}  // namespace setdet
