#include "setdet/data/class_balanced_sampler.h"

#include <algorithm>

#include "setdet/core/error.h"
#include "setdet/data/random.h"

namespace setdet {
namespace {
constexpr uint64_t kStreamTag = 0x434c53424cULL;  // "CLSBL": apart from the loader's streams
}  // namespace

ClassBalancedSampler::ClassBalancedSampler(int64_t cap) : cap_(cap) {
  SETDET_CHECK(cap > 0, "ClassBalancedSampler: cap must be a positive number of images, got ", cap);
}

std::vector<std::vector<int64_t>> ClassBalancedSampler::images_per_class(const Dataset& dataset) {
  const int64_t classes = dataset.num_classes();
  std::vector<std::vector<int64_t>> images(static_cast<size_t>(classes));
  std::vector<int64_t> last(static_cast<size_t>(classes), -1);
  for (int64_t i = 0; i < dataset.size(); ++i) {
    for (int64_t label : dataset.target_labels(i)) {
      SETDET_CHECK(label >= 0 && label < classes, "ClassBalancedSampler: item ", i, " has label ",
                   label, " outside 0..", classes - 1);
      auto& seen = last[static_cast<size_t>(label)];
      if (seen == i) continue;
      seen = i;
      images[static_cast<size_t>(label)].push_back(i);
    }
  }
  return images;
}

std::vector<double> ClassBalancedSampler::probabilities(
    const std::vector<std::vector<int64_t>>& images) const {
  std::vector<double> p(images.size(), 0.0);
  double total = 0.0;
  for (size_t k = 0; k < images.size(); ++k) {
    p[k] = static_cast<double>(std::min<int64_t>(static_cast<int64_t>(images[k].size()), cap_));
    total += p[k];
  }
  SETDET_CHECK(total > 0, "ClassBalancedSampler: no item of the dataset has a target");
  for (double& v : p) v /= total;
  return p;
}

std::vector<double> ClassBalancedSampler::class_probabilities(const Dataset& dataset) const {
  return probabilities(images_per_class(dataset));
}

std::vector<int64_t> ClassBalancedSampler::epoch_order(const Dataset& dataset, uint64_t seed,
                                                       int64_t epoch) const {
  const auto images = images_per_class(dataset);
  const std::vector<double> p = probabilities(images);
  std::vector<double> cumulative(p.size());
  double sum = 0.0;
  for (size_t k = 0; k < p.size(); ++k) cumulative[k] = sum += p[k];
  Rng rng({seed, kStreamTag, static_cast<uint64_t>(epoch)});
  std::vector<int64_t> order(static_cast<size_t>(dataset.size()));
  for (auto& index : order) {
    const double u = rng.uniform() * sum;
    size_t k = static_cast<size_t>(std::upper_bound(cumulative.begin(), cumulative.end(), u) -
                                   cumulative.begin());
    k = std::min(k, p.size() - 1);
    while (images[k].empty()) --k;  // u at the very top of the range lands on an empty class
    index =
        images[k][static_cast<size_t>(rng.randint(0, static_cast<int64_t>(images[k].size()) - 1))];
  }
  return order;
}

SETDET_REGISTER(DataSamplerRegistry, "ClassBalancedSampler", [](const Config& cfg) {
  cfg.check_keys({"type", "cap"});
  const auto cap = cfg.get<int64_t>("cap");
  SETDET_CHECK(cap > 0, cfg["cap"].where(), ": expected a positive number of images, got ", cap);
  return std::shared_ptr<DataSampler>(std::make_shared<ClassBalancedSampler>(cap));
});

}  // namespace setdet
