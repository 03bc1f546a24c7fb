// Data-parallel pieces: the distributed sampler and loader shards, and, with ranks run as threads
// of this process over a shared c10d::HashStore (Gloo over loopback), the normalisers,
// SyncBatchNorm, the gradient reducer, the byte collectives and the failure reports.
#include <gtest/gtest.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include "setdet/data/distributed_sampler.h"
#include "setdet/data/loader.h"
#include "setdet/data/synthetic.h"
#include "setdet/distributed/gradient_reducer.h"
#include "setdet/distributed/process_group_impl.h"
#include "setdet/engine/evaluator.h"
#include "setdet/engine/loader_source.h"
#include "setdet/layers/sync_batch_norm.h"
#include "setdet/models/backbones/resnet.h"
#include "testing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---- sampler ----

TEST(DistributedSampler, RankPartsConcatenateToTheOneProcessBatch) {
  for (int64_t n = 1; n <= 23; ++n) {
    for (int64_t b = 1; b <= 4; ++b) {
      for (int64_t w = 1; w <= 4; ++w) {
        const int64_t batches = global_batches(n, b, w, false);
        ASSERT_EQ(batches, (n + b * w - 1) / (b * w));
        ASSERT_EQ(global_batches(n, b, w, true), n / (b * w));
        for (int64_t g = 0; g < batches; ++g) {
          std::vector<int64_t> joined;
          size_t largest = 0, smallest = SIZE_MAX, previous = SIZE_MAX;
          for (int64_t r = 0; r < w; ++r) {
            const auto part = shard_positions(n, b, {r, w}, g, /*pad=*/false);
            joined.insert(joined.end(), part.begin(), part.end());
            largest = std::max(largest, part.size());
            smallest = std::min(smallest, part.size());
            ASSERT_LE(part.size(), previous) << "larger parts first";
            previous = part.size();
            const auto padded = shard_positions(n, b, {r, w}, g, /*pad=*/true);
            if (part.empty()) {
              // the empty parts of a short batch take the epoch's first positions, in rank order
              const int64_t k = std::min(b * w, n - g * b * w);
              ASSERT_EQ(padded, std::vector<int64_t>{(r - k) % n});
            } else {
              ASSERT_EQ(padded, part);
            }
          }
          std::vector<int64_t> one_process;
          for (int64_t p = g * b * w; p < std::min(n, (g + 1) * b * w); ++p) {
            one_process.push_back(p);
          }
          ASSERT_EQ(joined, one_process) << "n " << n << " b " << b << " w " << w << " g " << g;
          ASSERT_LE(largest - smallest, 1u);
        }
      }
    }
  }
  EXPECT_NE(test_util::error_of([] {
              shard_positions(10, 2, {2, 2}, 0, true);
            }).find("rank 2"),
            std::string::npos);
  EXPECT_NE(test_util::error_of([] {
              shard_positions(10, 2, {0, 2}, 3, true);
            }).find("batch 3"),
            std::string::npos);
}

class ShardedLoaderTest : public ::testing::Test {
 protected:
  static fs::path root_;
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("setdet_dist_loader_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    SyntheticOptions o;
    o.out_dir = root_.string();
    o.num_train = 13;
    o.num_val = 1;
    o.seed = 2;
    o.size = 64;
    generate_synthetic_dataset(o);
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  // pad: training (augmented, padded shards); else evaluation (original pixels, unpadded).
  static std::unique_ptr<DataLoader> loader(int64_t batch, DataShard shard, bool pad = true) {
    const std::string augment =
        pad ? "{type: Resize, scale: [[48, 48], [80, 80]], multiscale_mode: range}, "
              "{type: RandomFlip, prob: 0.5}, "
            : "";
    const Config cfg = Config::parse(
        "{batch_size: " + std::to_string(batch) +
            ", num_workers: 1, seed: 5, shuffle: " + (pad ? "true" : "false") +
            ", dataset: {type: CocoDataset, data_root: '" + root_.string() +
            "', ann_file: annotations/instances_train.json, img_dir: train, pipeline: [" + augment +
            "{type: Pad, size_divisor: 32}]}}",
        "loader.yaml");
    return DataLoader::from_config(cfg, 0, shard, pad);
  }
};
fs::path ShardedLoaderTest::root_;

// The images of one batch: (image id, flipped, the unpadded pixels).
struct Item {
  int64_t id;
  bool flipped;
  at::Tensor pixels;
};

std::vector<Item> items(const Batch& b) {
  std::vector<Item> out;
  for (int64_t i = 0; i < b.size(); ++i) {
    const auto hw = b.metas[i].input_hw;
    out.push_back({b.metas[i].image_id, b.metas[i].flipped,
                   b.images[i].narrow(1, 0, hw[0]).narrow(2, 0, hw[1])});
  }
  return out;
}

TEST_F(ShardedLoaderTest, TwoProcessesOfBatchTwoSeeTheImagesOfOneProcessOfBatchFour) {
  auto whole = loader(4, {0, 1});
  auto rank0 = loader(2, {0, 2});
  auto rank1 = loader(2, {1, 2});
  ASSERT_EQ(rank0->batches_per_epoch(), whole->batches_per_epoch());  // 4 = ceil(13 / 4)
  ASSERT_EQ(rank1->batches_per_epoch(), whole->batches_per_epoch());
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    whole->start_epoch(epoch);
    rank0->start_epoch(epoch);
    rank1->start_epoch(epoch);
    for (int64_t b = 0; b < whole->batches_per_epoch(); ++b) {
      auto expected = items(*whole->next());
      auto got = items(*rank0->next());
      const auto second = items(*rank1->next());
      if (expected.size() == 1) {
        // the last global batch has one image: rank 1 repeats the epoch's first image
        ASSERT_EQ(second.size(), 1u);
        ASSERT_EQ(second[0].id, items(whole->make_batch(epoch, 0))[0].id);
      } else {
        got.insert(got.end(), second.begin(), second.end());
      }
      ASSERT_EQ(got.size(), expected.size()) << "epoch " << epoch << " batch " << b;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].id, expected[i].id);
        EXPECT_EQ(got[i].flipped, expected[i].flipped);
        EXPECT_TRUE(got[i].pixels.equal(expected[i].pixels));
      }
    }
    EXPECT_FALSE(rank0->next() || rank1->next());
  }
  // Evaluation shards are not padded: rank 1 has no part of the last batch.
  EXPECT_EQ(loader(2, {1, 2}, /*pad=*/false)->batches_per_epoch(), 3);
  EXPECT_EQ(loader(2, {0, 2}, /*pad=*/false)->batches_per_epoch(), 4);
}

// ---- ranks as threads ----

// Runs fn(rank, group) on `world` threads, each a rank of one Gloo group; rethrows the first error.
void run_ranks(int world, const std::function<void(int, dist::ProcessGroup&)>& fn,
               std::chrono::milliseconds timeout = 20s) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto group = dist::create_gloo_process_group(store, store, r, world, timeout, 100ms,
                                                     /*loopback=*/true);
        dist::ScopedProcessGroup scope(group.get());
        fn(r, *group);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

TEST(ProcessGroup, NormalisersAreTheMeanOverRanksAndTheIdentityAlone) {
  EXPECT_EQ(dist::reduce_normalisers({3.0, 0.5}), (std::vector<double>{3.0, 0.5}));
  EXPECT_EQ(dist::world_size(), 1);
  run_ranks(3, [](int r, dist::ProcessGroup& g) {
    EXPECT_EQ(dist::world_size(), 3);
    EXPECT_EQ(dist::rank(), r);
    const auto m = dist::reduce_normalisers({static_cast<double>(r + 1), 10.0 * r});
    EXPECT_DOUBLE_EQ(m[0], 2.0);   // (1 + 2 + 3) / 3
    EXPECT_DOUBLE_EQ(m[1], 10.0);  // (0 + 10 + 20) / 3
    EXPECT_DOUBLE_EQ(dist::reduce_normaliser(r == 0 ? 6.0 : 0.0), 2.0);
  });
}

TEST(ProcessGroup, GatherAndBroadcastBytes) {
  run_ranks(3, [](int r, dist::ProcessGroup& g) {
    const std::string mine(static_cast<size_t>(r * 5), static_cast<char>('a' + r));
    const auto all = g.gather_bytes(mine, /*root=*/1);
    if (r == 1) {
      ASSERT_EQ(all.size(), 3u);
      EXPECT_EQ(all[0], "");
      EXPECT_EQ(all[1], "bbbbb");
      EXPECT_EQ(all[2], "cccccccccc");
    } else {
      EXPECT_TRUE(all.empty());
    }
    EXPECT_EQ(g.broadcast_bytes(r == 2 ? std::string("from two\0!", 10) : "", 2),
              std::string("from two\0!", 10));
  });
}

// SyncBatchNorm on 2 ranks x 2 images = BatchNorm2d on the 4 images: output, input gradient,
// the sum of the ranks' weight and bias gradients, running statistics.
void check_sync_batch_norm(bool channels_last) {
  torch::manual_seed(3);
  at::Tensor x = at::randn({4, 3, 5, 6}) * 2 + 0.5;
  if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor g = at::randn({4, 3, 5, 6});
  torch::nn::BatchNorm2d reference(3);
  const at::Tensor xr = x.detach().requires_grad_();
  const at::Tensor yr = reference(xr);
  (yr * g).sum().backward();

  std::vector<at::Tensor> y(2), dx(2), dw(2), db(2), mean(2), var(2);
  run_ranks(2, [&](int r, dist::ProcessGroup&) {
    SyncBatchNorm bn(3);
    const at::Tensor xs = x.narrow(0, 2 * r, 2).detach().requires_grad_();
    const at::Tensor ys = bn(xs);
    (ys * g.narrow(0, 2 * r, 2)).sum().backward();
    y[r] = ys.detach();
    dx[r] = xs.grad();
    dw[r] = bn->weight.grad();
    db[r] = bn->bias.grad();
    mean[r] = bn->running_mean;
    var[r] = bn->running_var;
    EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
  });
  EXPECT_TRUE(at::allclose(at::cat(y), yr, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(at::cat(dx), xr.grad(), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(dw[0] + dw[1], reference->weight.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(at::allclose(db[0] + db[1], reference->bias.grad(), 1e-4, 1e-5));
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(at::allclose(mean[r], reference->running_mean, 1e-6, 1e-6));
    EXPECT_TRUE(at::allclose(var[r], reference->running_var, 1e-6, 1e-6));
  }
}

TEST(SyncBatchNorm, TwoRanksMatchBatchNormOnTheWholeBatch) { check_sync_batch_norm(false); }
TEST(SyncBatchNorm, TwoRanksMatchBatchNormChannelsLast) { check_sync_batch_norm(true); }

TEST(SyncBatchNorm, BFloat16InputUnderAutocastComputesInFloat32) {
  torch::manual_seed(5);
  const at::Tensor x = at::randn({4, 3, 4, 4});
  torch::nn::BatchNorm2d reference(3);
  const at::Tensor yr = reference(x);
  std::vector<at::Tensor> y(2);
  run_ranks(2, [&](int r, dist::ProcessGroup&) {
    SyncBatchNorm bn(3);
    const at::Tensor xs = x.narrow(0, 2 * r, 2).to(at::kBFloat16).requires_grad_();
    y[r] = bn(xs);
    y[r].sum().backward();
    EXPECT_EQ(xs.grad().scalar_type(), at::kBFloat16);
    EXPECT_EQ(bn->weight.grad().scalar_type(), at::kFloat);
  });
  EXPECT_EQ(y[0].scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::allclose(at::cat(y).to(at::kFloat), yr, 2e-2, 2e-2));
}

TEST(SyncBatchNorm, IsBatchNorm2dInOneProcessAndInEvalMode) {
  torch::manual_seed(4);
  const at::Tensor x = at::randn({3, 2, 4, 4});
  SyncBatchNorm sync(2);
  torch::nn::BatchNorm2d bn(2);
  EXPECT_TRUE(sync(x).equal(bn(x)));
  EXPECT_TRUE(sync->running_var.equal(bn->running_var));
  sync->eval();
  bn->eval();
  EXPECT_TRUE(sync(x).equal(bn(x)));
  std::vector<std::string> names, bn_names;
  for (const auto& p : sync->named_parameters()) names.push_back(p.key());
  for (const auto& b : sync->named_buffers()) names.push_back(b.key());
  for (const auto& p : bn->named_parameters()) bn_names.push_back(p.key());
  for (const auto& b : bn->named_buffers()) bn_names.push_back(b.key());
  EXPECT_EQ(names, bn_names);
}

TEST(SyncBatchNorm, ResNetNormChoice) {
  const auto parse = [](const std::string& extra) {
    return resnet_options_from_config(
        Config::parse("{type: ResNet, depth: 18, base_channels: 8" + extra + "}", "r.yaml"));
  };
  ResNet net(parse(", norm: SyncBN"));
  int sync = 0, plain = 0;
  for (const auto& m : net->modules(false)) {
    sync += m->as<SyncBatchNorm>() != nullptr;
    plain += m->as<torch::nn::BatchNorm2d>() != nullptr;
  }
  EXPECT_EQ(sync, 20);  // 1 stem + 8 blocks x 2 + 3 downsample
  EXPECT_EQ(plain, 0);
  ResNet reference(parse(""));
  std::vector<std::string> a, b;
  for (const auto& p : net->named_parameters()) a.push_back(p.key());
  for (const auto& p : reference->named_parameters()) b.push_back(p.key());
  EXPECT_EQ(a, b);
  EXPECT_TRUE(parse(", norm: FrozenBN").frozen_bn());
  EXPECT_NE(test_util::error_of([&] {
              parse(", norm: SyncBN, frozen_bn: true");
            }).find("contradicts frozen_bn"),
            std::string::npos);
  EXPECT_EQ(parse(", norm: GN, gn_groups: 8").gn_groups(), 8);
  EXPECT_NE(test_util::error_of([&] { parse(", norm: LN"); })
                .find("expected BN, SyncBN, FrozenBN or GN, got 'LN'"),
            std::string::npos);
  // eval: folded like a BatchNorm2d
  net->eval();
  const at::Tensor x = at::randn({1, 3, 64, 64});
  const auto unfused = net->forward(x);
  net->fuse_for_inference();
  EXPECT_TRUE(at::allclose(net->forward(x).back(), unfused.back(), 1e-4, 1e-4));
}

TEST(GradientReducer, AveragesGradientsOverRanks) {
  // The ranks are threads of this process: seeding and drawing from the global generator are
  // serialised so that each rank's model and inputs do not depend on timing.
  static std::mutex rng_mutex;
  auto make = [] {
    std::lock_guard<std::mutex> lock(rng_mutex);
    torch::manual_seed(7);
    return torch::nn::Sequential(torch::nn::Linear(5, 16), torch::nn::ReLU(),
                                 torch::nn::Linear(16, 3));
  };
  auto input = [](int r, int it) {
    std::lock_guard<std::mutex> lock(rng_mutex);
    torch::manual_seed(100 + 10 * r + it);
    return at::randn({4, 5});
  };
  // expected: the mean of each rank's own gradient
  std::vector<std::vector<at::Tensor>> expected(2);
  for (int it = 0; it < 2; ++it) {
    auto model = make();
    std::vector<at::Tensor> sum;
    for (int r = 0; r < 2; ++r) {
      model->zero_grad();
      model->forward(input(r, it)).square().sum().backward();
      auto params = model->parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        const at::Tensor g = params[i].grad().clone();
        if (sum.size() <= i) {
          sum.push_back(g);
        } else {
          sum[i] += g;
        }
      }
    }
    for (auto& s : sum) s /= 2;
    expected[it] = sum;
  }
  run_ranks(2, [&](int r, dist::ProcessGroup& g) {
    auto model = make();
    dist::GradientReducer reducer(*model, g, /*bucket_size_mb=*/0.0001, false);
    for (int it = 0; it < 2; ++it) {
      model->zero_grad();
      reducer.before_forward();
      const at::Tensor loss = model->forward(input(r, it)).square().sum();
      reducer.before_backward(loss);
      loss.backward();
      auto params = model->parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        EXPECT_TRUE(at::allclose(params[i].grad(), expected[it][i], 1e-5, 1e-6))
            << "rank " << r << " iteration " << it << " parameter " << i;
      }
    }
  });
}

TEST(GradientReducer, BroadcastsRankZerosState) {
  run_ranks(2, [](int r, dist::ProcessGroup& g) {
    torch::manual_seed(r);  // different weights per rank
    torch::nn::BatchNorm2d bn(4);
    bn->running_mean.fill_(r + 1.0);
    bn->weight.data().fill_(r + 2.0);
    dist::broadcast_module_state(*bn, g, /*buffers_only=*/true);
    EXPECT_TRUE(bn->running_mean.equal(at::full({4}, 1.0)));
    EXPECT_TRUE(bn->weight.equal(at::full({4}, r + 2.0)));
    dist::broadcast_module_state(*bn, g, /*buffers_only=*/false);
    EXPECT_TRUE(bn->weight.equal(at::full({4}, 2.0)));
  });
}

// Detections that depend on the image alone: its boxes shifted by (id % 5) px with decreasing
// scores, and one false positive.
struct ShiftedTruth : DetectorModel {
  std::map<std::string, at::Tensor> losses(const Batch&) override { return {}; }
  std::vector<Detections> predict(const Batch& batch) override {
    std::vector<Detections> out;
    for (int64_t i = 0; i < batch.size(); ++i) {
      const double shift = static_cast<double>(batch.metas[i].image_id % 5);
      const int64_t n = batch.boxes[i].size(0);
      Detections d;
      d.boxes =
          at::cat({batch.boxes[i] + shift, at::tensor({0.f, 0.f, 20.f, 20.f}).reshape({1, 4})});
      d.scores = at::linspace(0.9, 0.1, n + 1);
      d.labels = at::cat({batch.labels[i], at::zeros({1}, at::kLong)});
      out.push_back(d);
    }
    return out;
  }
  int64_t num_classes() const override { return 8; }
};

TEST_F(ShardedLoaderTest, ShardedEvaluationGathersTheOneProcessResult) {
  const auto eval_data = [](int64_t batch, DataShard shard) {
    std::shared_ptr<DataLoader> l = loader(batch, shard, /*pad=*/false);
    EvalData d;
    d.gt = l->dataset().ground_truth();
    d.label_to_category = l->dataset().label_to_category();
    d.source = std::make_shared<LoaderBatchSource>(l);
    return d;
  };
  ShiftedTruth model;
  const auto expected = evaluate_detector(model, eval_data(4, {0, 1}));
  ASSERT_GT(expected.coco.stats[0], 0.05);
  ASSERT_LT(expected.coco.stats[0], 0.95);
  run_ranks(3, [&](int r, dist::ProcessGroup&) {
    ShiftedTruth local;
    const auto got = evaluate_detector(local, eval_data(2, {r, 3}));
    EXPECT_EQ(got.coco.stats, expected.coco.stats) << "rank " << r;
    if (r == 0) {
      EXPECT_EQ(got.images, 13);
      EXPECT_EQ(got.detections.size(), expected.detections.size());
    }
  });
}

// ---- failure reports ----

TEST(ProcessGroup, ReportNamesTheRankThatFailed) {
  std::atomic<bool> release{false};
  run_ranks(3, [&](int r, dist::ProcessGroup& g) {
    if (r == 2) g.report_failure("cannot decode /data/x.jpg");
    g.barrier();
    if (r == 0) {
      const std::string report = g.describe_failure("all_reduce (collective #9) failed: closed");
      EXPECT_NE(report.find("rank 2 failed: cannot decode /data/x.jpg"), std::string::npos)
          << report;
      EXPECT_EQ(report.find("rank 1"), std::string::npos) << report;  // alive, not behind
      EXPECT_NE(report.find("on this rank: all_reduce (collective #9)"), std::string::npos);
      release = true;
    }
    while (!release) std::this_thread::sleep_for(10ms);
  });
}

TEST(ProcessGroup, ReportNamesAStoppedRankAndAStuckRank) {
  std::atomic<bool> release{false};
  run_ranks(
      3,
      [&](int r, dist::ProcessGroup& g) {
        g.barrier();
        if (r == 1) g.impl().monitor->stop();  // no more heartbeats: as if the process died
        if (r == 0) {
          at::Tensor t = at::ones({1});
          const std::string error = test_util::error_of([&] {
            try {
              g.all_reduce_sum(t);  // ranks 1 and 2 never join: it times out
            } catch (const std::exception& e) {
              EXPECT_TRUE(dist::is_communication_failure(e));
              throw;
            }
          });
          EXPECT_NE(error.find("all_reduce (collective #2) failed"), std::string::npos) << error;
          const std::string report = g.describe_failure(error);
          EXPECT_NE(report.find("rank 1 stopped responding"), std::string::npos) << report;
          EXPECT_NE(report.find("rank 2 is alive but stuck before collective #2"),
                    std::string::npos)
              << report;
          release = true;
        }
        while (!release) std::this_thread::sleep_for(10ms);
      },
      /*timeout=*/1500ms);
}

}  // namespace
}  // namespace setdet
