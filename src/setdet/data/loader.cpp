#include "setdet/data/loader.h"

#include <algorithm>
#include <cstring>
#include <system_error>

#include "setdet/core/error.h"
#include "setdet/core/parallel.h"
#include "setdet/data/random.h"

namespace setdet {
namespace {
// Loader threads mostly decode images; a few per core keep them busy, thousands would exhaust
// memory and the process's thread limit.
int64_t max_workers() { return 4 * static_cast<int64_t>(available_cores()); }

// Rng stream tags, so the shuffle and the per-sample streams never share a key.
constexpr uint64_t kShuffleStream = 0x5348554646ULL;  // "SHUFF"
constexpr uint64_t kSampleStream = 0x53414d50ULL;     // "SAMP"
}  // namespace

Batch collate(const std::vector<Sample>& samples, int64_t size_divisor) {
  SETDET_CHECK(!samples.empty(), "collate: no samples");
  SETDET_CHECK(size_divisor > 0, "collate: size_divisor must be positive, got ", size_divisor);
  int64_t H = 0, W = 0;
  for (const auto& s : samples) {
    SETDET_CHECK(s.image.channels() == 3 && (s.image.depth() == CV_8U || s.image.depth() == CV_32F),
                 "collate: ", s.meta.file, ": expected a 3-channel 8-bit or float image");
    SETDET_CHECK(s.boxes.size() == s.labels.size(), "collate: ", s.meta.file, ": ", s.boxes.size(),
                 " boxes but ", s.labels.size(), " labels");
    H = std::max<int64_t>(H, s.image.rows);
    W = std::max<int64_t>(W, s.image.cols);
  }
  H = (H + size_divisor - 1) / size_divisor * size_divisor;
  W = (W + size_divisor - 1) / size_divisor * size_divisor;

  const auto B = static_cast<int64_t>(samples.size());
  Batch batch;
  batch.images = at::empty({B, 3, H, W}, at::kFloat);
  float* base = batch.images.data_ptr<float>();
  std::memset(base, 0, sizeof(float) * static_cast<size_t>(B * 3 * H * W));
  for (int64_t i = 0; i < B; ++i) {
    const Sample& s = samples[static_cast<size_t>(i)];
    cv::Mat image = s.image;
    if (image.depth() != CV_32F) image.convertTo(image, CV_32F);
    const cv::Rect roi(0, 0, image.cols, image.rows);
    cv::Mat planes[3];
    for (int c = 0; c < 3; ++c) {
      planes[c] = cv::Mat(static_cast<int>(H), static_cast<int>(W), CV_32F,
                          base + (i * 3 + c) * H * W)(roi);
    }
    const void* before = planes[0].data;
    cv::split(image, planes);  // into the tensor: the ROI headers already have the right shape
    TORCH_INTERNAL_ASSERT(planes[0].data == before, "collate: cv::split reallocated its output");

    const auto n = static_cast<int64_t>(s.boxes.size());
    at::Tensor boxes = at::empty({n, 4}, at::kFloat);
    at::Tensor labels = at::empty({n}, at::kLong);
    if (n > 0) {
      std::memcpy(boxes.data_ptr<float>(), s.boxes.data(),
                  sizeof(float) * 4 * static_cast<size_t>(n));
      std::memcpy(labels.data_ptr<int64_t>(), s.labels.data(),
                  sizeof(int64_t) * static_cast<size_t>(n));
    }
    batch.boxes.push_back(boxes);
    batch.labels.push_back(labels);
    ImageMeta meta = s.meta;
    meta.padded_hw = {H, W};
    batch.metas.push_back(std::move(meta));
  }
  return batch;
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  SETDET_CHECK(dataset_ != nullptr, "DataLoader: no dataset");
  SETDET_CHECK(options_.batch_size > 0, "DataLoader: batch_size must be positive, got ",
               options_.batch_size);
  SETDET_CHECK(options_.num_workers >= 0, "DataLoader: num_workers must be >= 0, got ",
               options_.num_workers);
  options_.num_workers =
      cap_thread_count(options_.num_workers, max_workers(), "DataLoader: num_workers");
  SETDET_CHECK(options_.prefetch > 0, "DataLoader: prefetch must be positive, got ",
               options_.prefetch);
  SETDET_CHECK(options_.size_divisor > 0, "DataLoader: size_divisor must be positive, got ",
               options_.size_divisor);
  SETDET_CHECK(dataset_->size() > 0, "DataLoader: the dataset is empty");
  // (an unpadded shard of a tiny evaluation set may be empty: that rank evaluates nothing)
  SETDET_CHECK(batches_per_epoch() > 0 || !options_.pad_shards, "DataLoader: drop_last with ",
               "batch_size ", options_.batch_size, " x ", options_.shard.world_size,
               " processes leaves no batch of a dataset of ", dataset_->size(), " images");
}

DataLoader::~DataLoader() { stop_workers(); }

std::unique_ptr<DataLoader> DataLoader::from_config(const Config& cfg, uint64_t default_seed,
                                                    const DataShard& shard, bool pad_shards) {
  cfg.check_keys({"batch_size", "num_workers", "prefetch", "shuffle", "drop_last", "seed",
                  "size_divisor", "sampler", "dataset"});
  LoaderOptions o;
  o.batch_size = cfg.get<int64_t>("batch_size", o.batch_size);
  o.num_workers = cfg.get<int64_t>("num_workers", o.num_workers);
  o.prefetch = cfg.get<int64_t>("prefetch", o.prefetch);
  o.shuffle = cfg.get<bool>("shuffle", o.shuffle);
  o.drop_last = cfg.get<bool>("drop_last", o.drop_last);
  o.seed = cfg.get<uint64_t>("seed", default_seed);
  o.size_divisor = cfg.get<int64_t>("size_divisor", o.size_divisor);
  o.shard = shard;
  o.pad_shards = pad_shards;
  if (cfg.has("sampler")) o.sampler = DataSamplerRegistry().build(cfg["sampler"]);
  auto positive = [&](const char* key, int64_t v, int64_t min) {
    SETDET_CHECK(v >= min, cfg[key].where(), ": expected an integer >= ", min, ", got ", v);
  };
  if (cfg.has("batch_size")) positive("batch_size", o.batch_size, 1);
  if (cfg.has("num_workers")) {
    positive("num_workers", o.num_workers, 0);
    o.num_workers = cap_thread_count(o.num_workers, max_workers(), cfg["num_workers"].where());
  }
  if (cfg.has("prefetch")) positive("prefetch", o.prefetch, 1);
  if (cfg.has("size_divisor")) positive("size_divisor", o.size_divisor, 1);
  std::shared_ptr<const Dataset> dataset = DatasetRegistry().build(cfg["dataset"]);
  SETDET_CHECK(dataset->size() > 0, cfg["dataset"].where(), ": the dataset has no images");
  return std::make_unique<DataLoader>(std::move(dataset), o);
}

int64_t DataLoader::batches_per_epoch() const {
  const int64_t n = dataset_->size();
  const int64_t g =
      global_batches(n, options_.batch_size, options_.shard.world_size, options_.drop_last);
  if (options_.pad_shards || g == 0) return g;
  // unpadded: the last global batch may leave this rank nothing
  return shard_positions(n, options_.batch_size, options_.shard, g - 1, false).empty() ? g - 1 : g;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  if (options_.sampler) {
    std::vector<int64_t> order = options_.sampler->epoch_order(*dataset_, options_.seed, epoch);
    SETDET_CHECK(static_cast<int64_t>(order.size()) == dataset_->size(),
                 "DataLoader: the sampler gave ", order.size(), " indices for a dataset of ",
                 dataset_->size());
    return order;
  }
  std::vector<int64_t> order(static_cast<size_t>(dataset_->size()));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  if (options_.shuffle) {
    Rng rng({options_.seed, kShuffleStream, static_cast<uint64_t>(epoch)});
    shuffle(order, rng);
  }
  return order;
}

Batch DataLoader::make_batch(int64_t epoch, int64_t batch) const {
  SETDET_CHECK(batch >= 0 && batch < batches_per_epoch(), "DataLoader: batch ", batch,
               " out of range (", batches_per_epoch(), " per epoch)");
  std::vector<int64_t> other_epoch;
  if (!started_ || epoch != epoch_) other_epoch = epoch_order(epoch);
  const std::vector<int64_t>& order = (started_ && epoch == epoch_) ? order_ : other_epoch;
  const std::vector<int64_t> positions = shard_positions(
      dataset_->size(), options_.batch_size, options_.shard, batch, options_.pad_shards);
  std::vector<Sample> samples;
  samples.reserve(positions.size());
  for (const int64_t k : positions) {
    const int64_t index = order[static_cast<size_t>(k)];
    Rng rng(
        {options_.seed, kSampleStream, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)});
    samples.push_back(dataset_->get(index, rng));
  }
  return collate(samples, options_.size_divisor);
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  ready_.clear();
  failure_ = nullptr;
  stop_ = false;
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  SETDET_CHECK(epoch >= 0, "DataLoader: epoch must be >= 0, got ", epoch);
  stop_workers();
  num_batches_ = batches_per_epoch();
  SETDET_CHECK(first_batch >= 0 && first_batch <= num_batches_, "DataLoader: first_batch ",
               first_batch, " out of range (", num_batches_, " batches per epoch)");
  epoch_ = epoch;
  order_ = epoch_order(epoch);
  started_ = true;
  next_yield_ = first_batch;
  next_claim_ = first_batch;
  for (int64_t w = 0; w < options_.num_workers; ++w) {
    try {
      workers_.emplace_back([this] { worker_loop(); });
    } catch (const std::system_error& e) {
      SETDET_CHECK(!workers_.empty(), "DataLoader: cannot start a worker thread (", e.what(), ")");
      break;  // fewer workers: the same batches, prepared more slowly
    }
  }
}

// Exceptions never leave a worker: a batch's error is handed to next() with the batch, anything
// else (out of memory while queueing) fails every later next().
void DataLoader::worker_loop() {
  try {
    produce_batches();
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!failure_) failure_ = std::current_exception();
    }
    ready_cv_.notify_all();
  }
}

void DataLoader::produce_batches() {
  const int64_t window = options_.num_workers * options_.prefetch;
  for (;;) {
    int64_t b = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_cv_.wait(lock, [&] {
        return stop_ || next_claim_ >= num_batches_ || next_claim_ < next_yield_ + window;
      });
      if (stop_ || next_claim_ >= num_batches_) return;
      b = next_claim_++;
    }
    Ready r;
    try {
      r.batch = make_batch(epoch_, b);
    } catch (...) {
      r.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(b, std::move(r));
    }
    ready_cv_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  SETDET_CHECK(started_, "DataLoader: call start_epoch() before next()");
  if (next_yield_ >= num_batches_) return std::nullopt;
  const int64_t b = next_yield_;
  if (options_.num_workers == 0) {
    ++next_yield_;
    return make_batch(epoch_, b);
  }
  Ready r;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait(lock, [&] { return ready_.count(b) > 0 || failure_; });
    auto it = ready_.find(b);
    if (it == ready_.end()) std::rethrow_exception(failure_);
    r = std::move(it->second);
    ready_.erase(it);
    ++next_yield_;
  }
  space_cv_.notify_all();
  if (r.error) std::rethrow_exception(r.error);
  return std::move(r.batch);
}

}  // namespace setdet
