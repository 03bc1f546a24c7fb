// Runner, hooks, checkpoints and the evaluator, on a tiny DetectorModel defined here and an
// in-memory BatchSource.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/nn/functional.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "setdet/config/config.h"
#include "setdet/data/random.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/engine/evaluator.h"
#include "setdet/engine/hooks.h"
#include "setdet/engine/lr_schedule.h"
#include "setdet/engine/optim.h"
#include "setdet/engine/runner.h"
#include "testing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

using test_util::error_of;

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("setdet_engine_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// conv -> BN -> dropout -> pool -> linear: predicts one box (cx, cy) and an objectness per image.
// Dropout draws from LibTorch's default generator, so resuming must restore its state.
class TinyDetector : public DetectorModel {
 public:
  TinyDetector() {
    conv_ =
        register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    bn_ = register_module("bn", torch::nn::BatchNorm2d(8));
    fc_ = register_module("fc", torch::nn::Linear(8, 3));
  }
  at::Tensor forward(const at::Tensor& images) {
    auto x = torch::relu(bn_(conv_(images)));
    x = F::dropout(x, F::DropoutFuncOptions().p(0.2).training(is_training()));
    return fc_(x.mean({2, 3}));  // [B, 3]
  }
  std::map<std::string, at::Tensor> losses(const Batch& batch) override {
    const auto out = forward(batch.images);
    std::vector<at::Tensor> centres;
    for (const auto& b : batch.boxes) {
      centres.push_back(((b.narrow(1, 0, 2) + b.narrow(1, 2, 2)) / 2).mean(0) / 16.0);
    }
    const auto target = at::stack(centres);
    return {{"loss_centre", F::mse_loss(out.narrow(1, 0, 2), target)},
            {"loss_obj",
             F::binary_cross_entropy_with_logits(out.select(1, 2), at::ones({batch.size()}))},
            {"mean_centre", target.mean().detach()}};
  }
  std::vector<Detections> predict(const Batch& batch) override {
    const auto out = forward(batch.images);
    std::vector<Detections> dets;
    for (int64_t i = 0; i < batch.size(); ++i) {
      const auto c = out[i].narrow(0, 0, 2) * 16.0;
      Detections d;
      d.boxes = at::cat({c - 4.0, c + 4.0}).reshape({1, 4}).to(at::kFloat);
      d.scores = out[i].narrow(0, 2, 1).sigmoid().to(at::kFloat);
      d.labels = at::zeros({1}, at::kLong);
      dets.push_back(d);
    }
    return dets;
  }
  int64_t num_classes() const override { return 1; }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

// `n` 16x16 images, each with one box, shuffled per epoch with Rng(seed, epoch).
class MemorySource : public BatchSource {
 public:
  MemorySource(int64_t n, int64_t batch_size, uint64_t seed, bool shuffle = true)
      : batch_size_(batch_size), seed_(seed), shuffle_(shuffle) {
    Rng rng({1234});
    for (int64_t i = 0; i < n; ++i) {
      auto img = at::empty({3, 16, 16});
      auto* p = img.data_ptr<float>();
      for (int64_t k = 0; k < img.numel(); ++k) p[k] = static_cast<float>(rng.normal());
      const double x = rng.uniform(0, 8), y = rng.uniform(0, 8);
      images_.push_back(img);
      boxes_.push_back(at::tensor({static_cast<float>(x), static_cast<float>(y),
                                   static_cast<float>(x + 8), static_cast<float>(y + 8)})
                           .reshape({1, 4}));
    }
  }
  int64_t batches_per_epoch() const override {
    return (static_cast<int64_t>(images_.size()) + batch_size_ - 1) / batch_size_;
  }
  void start_epoch(int64_t epoch, int64_t first_batch) override {
    order_.resize(images_.size());
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
    if (shuffle_) {
      Rng rng({seed_, static_cast<uint64_t>(epoch)});
      shuffle(order_, rng);
    }
    pos_ = first_batch * batch_size_;
  }
  std::optional<Batch> next() override {
    if (pos_ >= static_cast<int64_t>(order_.size())) return std::nullopt;
    Batch b;
    std::vector<at::Tensor> imgs;
    for (int64_t k = pos_; k < std::min<int64_t>(pos_ + batch_size_, order_.size()); ++k) {
      const int64_t i = order_[k];
      imgs.push_back(images_[i]);
      b.boxes.push_back(boxes_[i]);
      b.labels.push_back(at::zeros({1}, at::kLong));
      ImageMeta m;
      m.image_id = i + 1;
      m.original_hw = m.input_hw = m.padded_hw = {16, 16};
      b.metas.push_back(m);
    }
    b.images = at::stack(imgs);
    pos_ += batch_size_;
    return b;
  }
  // Ground truth of every image (category 5), for evaluation.
  std::shared_ptr<CocoDataset> ground_truth() const {
    auto gt = std::make_shared<CocoDataset>();
    gt->categories.push_back({5, "thing", ""});
    for (size_t i = 0; i < images_.size(); ++i) {
      const auto id = static_cast<int64_t>(i) + 1;
      gt->images.push_back({id, "img" + std::to_string(id), 16, 16});
      const auto* b = boxes_[i].data_ptr<float>();
      gt->annotations.push_back({id, id, 5, {b[0], b[1], b[2] - b[0], b[3] - b[1]}, 64.0, false});
    }
    gt->index();
    return gt;
  }

 private:
  int64_t batch_size_;
  uint64_t seed_;
  bool shuffle_;
  std::vector<at::Tensor> images_, boxes_;
  std::vector<int64_t> order_;
  int64_t pos_ = 0;
};

// Records the loss and lr of every iteration.
class RecordHook : public Hook {
 public:
  explicit RecordHook(int64_t stop_at = -1) : Hook(priority::kLowest), stop_at_(stop_at) {}
  std::string name() const override { return "RecordHook"; }
  void after_train_iter(Runner& r) override {
    losses.push_back(r.log_buffer().last("loss"));
    lrs.push_back(r.current_lrs().front());
    if (r.iter() == stop_at_) r.request_stop();
  }
  std::vector<double> losses, lrs;

 private:
  int64_t stop_at_;
};

constexpr const char* kTrainYaml = R"(
optimizer: {type: AdamW, lr: 0.01, weight_decay: 0.05, paramwise: {norm_decay_mult: 0.0}}
lr_schedule: {type: Cosine, warmup_iters: 3, warmup_ratio: 0.1, min_lr_ratio: 0.05}
runner: {max_iters: 16, seed: 7, log_interval: 4}
grad_clip: {max_norm: 5.0}
)";

struct Setup {
  std::shared_ptr<TinyDetector> model;
  std::shared_ptr<Runner> runner;
};

// Seeds, builds the model (after seeding, as `setdet train` does) and the runner with the
// default hooks.
Setup make_setup(const Config& cfg, const std::string& work_dir, bool with_eval = false) {
  auto opts = RunnerOptions::from_config(cfg.find("runner"));
  opts.work_dir = work_dir;
  torch::manual_seed(opts.seed);
  Setup s;
  s.model = std::make_shared<TinyDetector>();
  auto optimizer = build_optimizer(cfg["optimizer"], *s.model);
  s.runner = std::make_shared<Runner>(s.model, optimizer,
                                      build_lr_schedule(cfg.find("lr_schedule")), opts);
  s.runner->set_meta({cfg["optimizer"].get<std::string>("type"), cfg.dump()});
  for (auto& h : build_hooks(cfg, with_eval)) s.runner->register_hook(h);
  return s;
}

std::vector<double> run(const Config& cfg, const std::string& work_dir, int64_t stop_at = -1,
                        const std::string& resume = "") {
  auto s = make_setup(cfg, work_dir);
  auto rec = std::make_shared<RecordHook>(stop_at);
  s.runner->register_hook(rec);
  if (!resume.empty()) s.runner->resume(resume);
  MemorySource data(10, 3, s.runner->options().seed);  // 4 batches per epoch, last one short
  s.runner->train(data);
  return rec->losses;
}

TEST(Runner, SameSeedSameLosses) {
  const auto cfg = Config::parse(kTrainYaml, "train.yaml");
  const auto a = run(cfg, "");
  const auto b = run(cfg, "");
  ASSERT_EQ(a.size(), 16u);
  EXPECT_EQ(a, b);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  const auto c = run(cfg, "");
  const auto d = run(cfg, "");
  at::set_num_threads(threads);
  EXPECT_EQ(c, d);
  // training moves: the loss of the last iterations is below that of the first ones
  EXPECT_LT(a[12] + a[13] + a[14] + a[15], a[0] + a[1] + a[2] + a[3]);
}

// A gradient norm above 100 x grad_clip.max_norm is logged with the parameters it comes from, at
// most once per log interval (16 iterations, log_interval 4: 4 lines).
TEST(Runner, ExplodingGradientNamesTheLargestParameterGradients) {
  std::string yaml = kTrainYaml;
  yaml.replace(yaml.find("max_norm: 5.0"), 13, "max_norm: 1.0e-9");
  const auto cfg = Config::parse(yaml, "train.yaml");
  TempDir dir("explode");
  run(cfg, dir.path.string());
  std::ifstream log(dir.file("train.log"));
  std::string line;
  int reports = 0;
  while (std::getline(log, line)) {
    if (line.find("(> 100 x grad_clip.max_norm)") == std::string::npos) continue;
    ++reports;
    EXPECT_NE(line.find("largest in: "), std::string::npos) << line;
    EXPECT_TRUE(line.find("conv.weight") != std::string::npos ||
                line.find("fc.weight") != std::string::npos ||
                line.find("bn.weight") != std::string::npos)
        << line;
  }
  EXPECT_EQ(reports, 4);
}

// ProfilerHook: iterations 5-7 recorded; the log's table and work_dir/profile.json name the
// convolution and the autograd nodes of the backward, with self time <= total time.
TEST(Hooks, ProfilerHookTablesTheOperatorsOfTheRecordedIterations) {
  const auto cfg = Config::parse(std::string(kTrainYaml) +
                                     "hooks: [{type: ProfilerHook, start_iter: 4, num_iters: 3, "
                                     "top: 8}]\n",
                                 "train.yaml");
  TempDir dir("profile");
  run(cfg, dir.path.string());
  std::ifstream log(dir.file("train.log"));
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("profile of iterations 5-7 ("), std::string::npos) << text.str();
  std::ifstream in(dir.file("profile.json"));
  ASSERT_TRUE(in.good());
  std::stringstream json;
  json << in.rdbuf();
  const std::string j = json.str();
  EXPECT_EQ(j.rfind("{\"iterations\": 3, \"wall_ms_per_iter\": ", 0), 0u) << j.substr(0, 200);
  EXPECT_NE(j.find("\"name\": \"aten::conv2d\""), std::string::npos);
  EXPECT_NE(j.find("Backward"), std::string::npos);  // autograd nodes of loss.backward()
  // every entry: self_ms <= total_ms
  size_t pos = 0;
  int entries = 0;
  while ((pos = j.find("\"self_ms\": ", pos)) != std::string::npos) {
    const double self = std::stod(j.substr(pos + 11));
    const size_t t = j.find("\"total_ms\": ", pos);
    ASSERT_NE(t, std::string::npos);
    EXPECT_LE(self, std::stod(j.substr(t + 12)) + 1e-3);
    pos = t;
    ++entries;
  }
  EXPECT_GT(entries, 10);
  EXPECT_THROW(
      HookRegistry().build(Config::parse("{type: ProfilerHook, num_iters: 0}", "p.yaml")), Error);
}

TEST(Runner, ResumeGivesTheUninterruptedTrajectory) {
  const auto cfg = Config::parse(kTrainYaml, "train.yaml");
  const auto full = run(cfg, "");
  TempDir dir("resume");
  // Stopped after iteration 7 (mid-epoch 2): latest.pt holds epoch 1, batch 3.
  const auto first = run(cfg, dir.path.string(), 7);
  ASSERT_EQ(first.size(), 7u);
  ASSERT_TRUE(fs::exists(dir.file("latest.pt")));
  const auto second = run(cfg, "", -1, dir.file("latest.pt"));
  ASSERT_EQ(second.size(), 9u);
  std::vector<double> joined = first;
  joined.insert(joined.end(), second.begin(), second.end());
  ASSERT_EQ(joined.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(joined[i], full[i]) << "iteration " << i + 1;
}

TEST(Runner, ResumeAtAnEpochBoundaryAndSeedMismatch) {
  const auto cfg = Config::parse(kTrainYaml, "train.yaml");
  const auto full = run(cfg, "");
  TempDir dir("boundary");
  const auto first = run(cfg, dir.path.string(), 8);  // the end of epoch 2
  const auto second = run(cfg, "", -1, dir.file("latest.pt"));
  std::vector<double> joined = first;
  joined.insert(joined.end(), second.begin(), second.end());
  EXPECT_EQ(joined, full);

  auto other = Config::parse(kTrainYaml, "train.yaml");
  other.set_override("runner.seed=8");
  const auto err = error_of([&] { run(other, "", -1, dir.file("latest.pt")); });
  EXPECT_NE(err.find("saved with seed 7, the config has runner.seed 8"), std::string::npos) << err;
}

TEST(Runner, TimeKeyedCosineWithInjectedClock) {
  auto cfg = Config::parse(R"(
optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
lr_schedule: {type: Cosine, by_time: true, warmup_iters: 2, warmup_ratio: 0.5}
runner: {max_seconds: 100, max_epochs: 50, seed: 1}
)",
                           "time.yaml");
  auto s = make_setup(cfg, "");
  double fake_now = 0.0;
  s.runner->set_clock([&] { return fake_now; });
  // Runs before the LrSchedulerHook (priority 10): iteration i starts at t = 10 i seconds.
  struct Tick : Hook {
    double* now;
    explicit Tick(double* n) : Hook(priority::kHighest), now(n) {}
    std::string name() const override { return "Tick"; }
    void before_train_iter(Runner& r) override { *now = 10.0 * static_cast<double>(r.iter()); }
  };
  s.runner->register_hook(std::make_shared<Tick>(&fake_now));
  auto rec = std::make_shared<RecordHook>();
  s.runner->register_hook(rec);
  MemorySource data(6, 2, 1);
  s.runner->train(data);
  // iteration 10 starts at t = 100 = max_seconds; the limit check after it stops training
  ASSERT_EQ(rec->lrs.size(), 11u);
  for (size_t i = 0; i < rec->lrs.size(); ++i) {
    const double t = 10.0 * static_cast<double>(i) / 100.0;
    double expected = 0.1 * 0.5 * (1 + std::cos(M_PI * t));
    if (i < 2) expected *= 1.0 - (1.0 - static_cast<double>(i) / 2.0) * 0.5;
    EXPECT_NEAR(rec->lrs[i], expected, 1e-12) << i;
  }
  EXPECT_DOUBLE_EQ(s.runner->state().elapsed_seconds, 100.0);
}

// 8 validation images of MemorySource, one category (id 5).
void set_memory_val_data(Runner& runner) {
  EvalData val;
  val.source = std::make_shared<MemorySource>(8, 4, 3, false);
  val.gt = static_cast<const MemorySource&>(*val.source).ground_truth();
  val.label_to_category = {5};
  runner.set_val_data(val);
}

TEST(Runner, StopsAtMaxEpochsAndWritesWorkDir) {
  auto cfg = Config::parse(R"(
optimizer: {type: AdamW, lr: 0.001}
runner: {max_epochs: 2, seed: 3, log_interval: 2, checkpoint_interval: 1, eval_interval: 1}
hooks: [{type: CheckpointHook, max_keep: 1}]
)",
                           "epochs.yaml");
  TempDir dir("epochs");
  auto s = make_setup(cfg, dir.path.string(), /*with_eval=*/true);
  MemorySource data(8, 4, 3);
  set_memory_val_data(*s.runner);
  struct CountEval : Hook {
    int epochs = 0, iters = 0;
    CountEval() : Hook(priority::kNormal) {}
    std::string name() const override { return "CountEval"; }
    void before_val_epoch(Runner&) override { ++epochs; }
    void after_val_iter(Runner&) override { ++iters; }
  };
  auto count = std::make_shared<CountEval>();
  s.runner->register_hook(count);
  s.runner->train(data);
  EXPECT_EQ(s.runner->iter(), 4);
  EXPECT_EQ(s.runner->epoch(), 2);
  EXPECT_EQ(count->epochs, 2);  // after each epoch (the last one also being the end)
  EXPECT_EQ(count->iters, 4);
  EXPECT_TRUE(fs::exists(dir.file("latest.pt")));
  EXPECT_TRUE(fs::exists(dir.file("epoch_2.pt")));
  EXPECT_FALSE(fs::exists(dir.file("epoch_1.pt")));  // max_keep: 1
  EXPECT_TRUE(fs::exists(dir.file("train.log")));
  std::ifstream metrics(dir.file("metrics.json"));
  std::stringstream text;
  text << metrics.rdbuf();
  const auto yaml = YAML::Load(text.str());  // JSON is YAML
  ASSERT_TRUE(yaml["AP"]) << text.str();
  const double ap = yaml["AP"].as<double>();
  EXPECT_GE(ap, 0.0);
  EXPECT_LE(ap, 1.0);
  EXPECT_DOUBLE_EQ(ap, s.runner->metrics().at("AP"));
  EXPECT_EQ(yaml["iters"].as<int64_t>(), 4);
  EXPECT_EQ(yaml["images"].as<int64_t>(), 16);
  EXPECT_GT(yaml["train_seconds"].as<double>(), 0.0);
  EXPECT_TRUE(yaml["final_losses"]["loss_obj"]);
  // log.jsonl: one train line per log interval, one val line per evaluation
  std::ifstream jsonl(dir.file("log.jsonl"));
  int train_lines = 0, val_lines = 0;
  for (std::string line; std::getline(jsonl, line);) {
    const auto node = YAML::Load(line);
    (node["mode"].as<std::string>() == "train" ? train_lines : val_lines) += 1;
  }
  EXPECT_EQ(train_lines, 2);
  EXPECT_EQ(val_lines, 2);
  // no temporary files left behind
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

TEST(Hooks, EvalHookIntervalItersEvaluatesMidEpochAndAtTheEnd) {
  auto cfg = Config::parse(R"(
optimizer: {type: AdamW, lr: 0.001}
runner: {max_iters: 7, seed: 3, log_interval: 100, checkpoint_interval: 0, eval_interval: 0}
hooks: [{type: EvalHook, interval_iters: 3}]
)",
                           "eval_iters.yaml");
  TempDir dir("eval_iters");
  auto s = make_setup(cfg, dir.path.string(), /*with_eval=*/true);
  MemorySource data(8, 2, 3);  // 4 batches per epoch
  set_memory_val_data(*s.runner);
  struct EvalIters : Hook {
    std::vector<int64_t> at;
    bool training_after = true;
    EvalIters() : Hook(priority::kNormal) {}
    std::string name() const override { return "EvalIters"; }
    void before_val_epoch(Runner& r) override { at.push_back(r.iter()); }
    void before_train_iter(Runner& r) override { training_after &= r.model().is_training(); }
  };
  auto rec = std::make_shared<EvalIters>();
  s.runner->register_hook(rec);
  s.runner->train(data);
  // iterations 3 and 6 (6 is mid-epoch 2), then the end (7); the epoch-4 boundary has
  // eval_interval 0
  EXPECT_EQ(rec->at, (std::vector<int64_t>{3, 6, 7}));
  EXPECT_TRUE(rec->training_after);  // training resumes in train mode
  EXPECT_THROW(
      build_hooks(Config::parse("hooks: [{type: EvalHook, interval_iters: -1}]", "x.yaml"), true),
      Error);
}

TEST(Hooks, CalledInPriorityOrderStableForTies) {
  const auto cfg = Config::parse(kTrainYaml, "train.yaml");
  auto s = make_setup(cfg, "");
  std::vector<std::string> calls;
  struct Probe : Hook {
    std::string tag;
    std::vector<std::string>* calls;
    Probe(std::string t, int p, std::vector<std::string>* c)
        : Hook(p), tag(std::move(t)), calls(c) {}
    std::string name() const override { return tag; }
    void before_run(Runner&) override { calls->push_back("before_run:" + tag); }
    void after_train_iter(Runner& r) override {
      if (r.iter() == 1) calls->push_back("after_train_iter:" + tag);
    }
  };
  s.runner->register_hook(std::make_shared<Probe>("c", 60, &calls));
  s.runner->register_hook(std::make_shared<Probe>("a", 0, &calls));
  s.runner->register_hook(std::make_shared<Probe>("b1", 45, &calls));
  s.runner->register_hook(std::make_shared<Probe>("b2", 45, &calls));
  std::vector<std::string> names;
  std::vector<int> priorities;
  for (const auto& h : s.runner->hooks()) {
    names.push_back(h->name());
    priorities.push_back(h->priority());
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"a", "LrSchedulerHook", "OptimizerHook", "b1", "b2",
                                      "CheckpointHook", "c", "IterTimerHook", "LoggerHook"}));
  EXPECT_TRUE(std::is_sorted(priorities.begin(), priorities.end()));
  MemorySource data(4, 2, 7);
  s.runner->train(data);
  EXPECT_EQ(calls,
            (std::vector<std::string>{"before_run:a", "before_run:b1", "before_run:b2",
                                      "before_run:c", "after_train_iter:a", "after_train_iter:b1",
                                      "after_train_iter:b2", "after_train_iter:c"}));
}

TEST(Hooks, ConfigListMergesDefaultsAndRejectsUnknowns) {
  auto cfg = Config::parse(R"(
runner: {max_iters: 5, log_interval: 20}
hooks:
  - {type: LoggerHook, interval: 7, priority: LOWEST}
  - {type: IterTimerHook, priority: 5}
)",
                           "hooks.yaml");
  const auto hooks = build_hooks(cfg, /*with_eval=*/true);
  std::map<std::string, int> priority_of;
  for (const auto& h : hooks) priority_of[h->name()] = h->priority();
  EXPECT_EQ(hooks.size(), 6u);
  EXPECT_EQ(priority_of.at("LoggerHook"), 100);
  EXPECT_EQ(priority_of.at("IterTimerHook"), 5);
  EXPECT_EQ(priority_of.at("EvalHook"), 70);
  EXPECT_EQ(priority_of.at("OptimizerHook"), 40);

  cfg.set_override("hooks=[{type: EMAHook}]");
  const auto unknown = error_of([&] { build_hooks(cfg, false); });
  EXPECT_NE(unknown.find("hooks.yaml: hooks[0].type: unknown hook 'EMAHook' (known: "
                         "CheckpointHook, EvalHook, IterTimerHook, LoggerHook, LrSchedulerHook, "
                         "OptimizerHook, ProfilerHook, ThreadGovernorHook)"),
            std::string::npos)
      << unknown;
  cfg.set_override("hooks=[{type: LoggerHook, every: 3}]");
  const auto key = error_of([&] { build_hooks(cfg, false); });
  EXPECT_NE(key.find("unknown key 'hooks[0].every'"), std::string::npos) << key;
  cfg.set_override("hooks=[{type: LoggerHook, priority: URGENT}]");
  const auto prio = error_of([&] { build_hooks(cfg, false); });
  EXPECT_NE(prio.find("hooks[0].priority: expected a priority in 0..100"), std::string::npos)
      << prio;
  auto clip = Config::parse("grad_clip: {max_norm: 0}\n", "clip.yaml");
  const auto clip_err = error_of([&] { build_hooks(clip, false); });
  EXPECT_NE(clip_err.find("clip.yaml: grad_clip.max_norm: expected > 0"), std::string::npos)
      << clip_err;
  auto runner = Config::parse("runner: {max_iter: 5}\n", "runner.yaml");
  const auto runner_err = error_of([&] { RunnerOptions::from_config(runner["runner"]); });
  EXPECT_NE(runner_err.find("runner.yaml: unknown key 'runner.max_iter'"), std::string::npos)
      << runner_err;
}

TEST(Hooks, NonFiniteLossStopsWithTheIteration) {
  const auto cfg = Config::parse(kTrainYaml, "train.yaml");
  auto s = make_setup(cfg, "");
  struct Poison : Hook {
    Poison() : Hook(priority::kHighest) {}
    std::string name() const override { return "Poison"; }
    void before_train_iter(Runner& r) override {
      if (r.iter() == 2) r.model().parameters()[0].data().fill_(std::nan(""));
    }
  };
  s.runner->register_hook(std::make_shared<Poison>());
  MemorySource data(10, 3, 7);
  const auto err = error_of([&] { s.runner->train(data); });
  EXPECT_NE(err.find("non-finite loss at iteration 3"), std::string::npos) << err;
}

// TinyDetector whose loss_obj is NaN (or +inf) on the listed calls of losses() (1-based).
class FlakyDetector : public TinyDetector {
 public:
  explicit FlakyDetector(std::set<int> bad) : bad_(std::move(bad)) {}
  std::map<std::string, at::Tensor> losses(const Batch& batch) override {
    auto out = TinyDetector::losses(batch);
    if (bad_.count(++calls_)) {
      out["loss_obj"] = out["loss_obj"] * (calls_ % 2 ? std::nan("") : HUGE_VAL);
    }
    return out;
  }

 private:
  std::set<int> bad_;
  int calls_ = 0;
};

// The parameters after every iteration, and the error training ended with ("" if none).
struct FlakyRun {
  std::vector<std::vector<at::Tensor>> params;
  std::string error;
};

FlakyRun run_flaky(const std::string& yaml, std::set<int> bad, const std::string& work_dir) {
  const auto cfg = Config::parse(yaml, "flaky.yaml");
  auto opts = RunnerOptions::from_config(cfg.find("runner"));
  opts.work_dir = work_dir;
  torch::manual_seed(opts.seed);
  auto model = std::make_shared<FlakyDetector>(std::move(bad));
  Runner runner(model, build_optimizer(cfg["optimizer"], *model),
                build_lr_schedule(cfg.find("lr_schedule")), opts);
  runner.set_meta({cfg["optimizer"].get<std::string>("type"), cfg.dump()});
  for (auto& h : build_hooks(cfg, false)) runner.register_hook(h);
  struct Snapshot : Hook {
    explicit Snapshot(FlakyRun& out) : Hook(priority::kLowest), out_(out) {}
    std::string name() const override { return "Snapshot"; }
    void after_train_iter(Runner& r) override {
      std::vector<at::Tensor> p;
      for (const auto& t : r.model().parameters()) p.push_back(t.detach().clone());
      out_.params.push_back(p);
    }
    FlakyRun& out_;
  };
  FlakyRun out;
  runner.register_hook(std::make_shared<Snapshot>(out));
  MemorySource data(10, 3, opts.seed);
  out.error = error_of([&] { runner.train(data); });
  return out;
}

bool same_params(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  for (size_t k = 0; k < a.size(); ++k) {
    if (!at::equal(a[k], b[k])) return false;
  }
  return true;
}

TEST(Hooks, NonFiniteLossNamesIterationTermAndLastCheckpoint) {
  TempDir dir("nonfinite");
  const std::string yaml =
      std::string(kTrainYaml) + "hooks: [{type: CheckpointHook, interval_iters: 2}]\n";
  const FlakyRun r = run_flaky(yaml, {5}, dir.path.string());
  EXPECT_NE(r.error.find("non-finite loss at iteration 5 (epoch 2): loss_obj is nan (loss_centre="),
            std::string::npos)
      << r.error;
  EXPECT_NE(r.error.find("loss_obj=nan"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("training stopped, the last good checkpoint is " + dir.file("latest.pt") +
                         " (iteration 4)"),
            std::string::npos)
      << r.error;
  EXPECT_EQ(r.params.size(), 4u);  // iteration 5's hooks never completed
  TinyDetector probe;
  EXPECT_EQ(load_checkpoint(dir.file("latest.pt"), probe).state.iter, 4);

  const FlakyRun early = run_flaky(kTrainYaml, {1}, "");
  EXPECT_NE(early.error.find("non-finite loss at iteration 1 (epoch 1): loss_obj is nan"),
            std::string::npos)
      << early.error;
  EXPECT_NE(early.error.find("no checkpoint was saved in this run"), std::string::npos)
      << early.error;
}

TEST(Hooks, NonFiniteSkipSkipsBatchesUpToTheLimit) {
  const std::string yaml = R"(
optimizer: {type: AdamW, lr: 0.01}
runner: {max_iters: 16, seed: 7, log_interval: 4, nonfinite: skip, nonfinite_max_skips: 2}
)";
  // NaN at 3, +inf at 6: both skipped, no optimiser step, training completes.
  const FlakyRun r = run_flaky(yaml, {3, 6}, "");
  EXPECT_EQ(r.error, "");
  ASSERT_EQ(r.params.size(), 16u);
  EXPECT_TRUE(same_params(r.params[2], r.params[1]));   // iteration 3 skipped
  EXPECT_TRUE(same_params(r.params[5], r.params[4]));   // iteration 6 skipped
  EXPECT_FALSE(same_params(r.params[3], r.params[2]));  // iteration 4 stepped
  // A third one stops training.
  const FlakyRun stopped = run_flaky(yaml, {3, 6, 9}, "");
  EXPECT_NE(stopped.error.find("non-finite loss at iteration 9 (epoch 3): loss_obj is nan"),
            std::string::npos)
      << stopped.error;
  EXPECT_NE(stopped.error.find(", after 2 skipped batches (runner.nonfinite_max_skips); training "
                               "stopped, no checkpoint was saved in this run"),
            std::string::npos)
      << stopped.error;
  const auto bad = error_of([] {
    RunnerOptions::from_config(
        Config::parse("runner: {max_iters: 1, nonfinite: ignore}", "r.yaml").find("runner"));
  });
  EXPECT_NE(bad.find("r.yaml: runner.nonfinite: expected 'stop' or 'skip', got 'ignore'"),
            std::string::npos)
      << bad;
}

TEST(Checkpoint, RoundTripRestoresModelOptimizerStateAndRng) {
  torch::manual_seed(0);
  TinyDetector a;
  auto opt_a =
      std::make_shared<torch::optim::AdamW>(a.parameters(), torch::optim::AdamWOptions(0.01));
  MemorySource data(4, 2, 0);
  data.start_epoch(0, 0);
  const auto batch = *data.next();
  auto step = [&](TinyDetector& m, torch::optim::Optimizer& o) {
    o.zero_grad();
    auto losses = m.losses(batch);
    (losses["loss_centre"] + losses["loss_obj"]).backward();
    o.step();
  };
  step(a, *opt_a);
  step(a, *opt_a);
  TempDir dir("ckpt");
  TrainState state;
  state.iter = 2;
  state.epoch = 1;
  state.iter_in_epoch = 1;
  state.elapsed_seconds = 12.5;
  state.images_seen = 4;
  state.seed = 99;
  save_checkpoint(dir.file("a.pt"), a, opt_a.get(), state, {"AdamW", "runner: {}"});
  const auto rng_after_save = at::rand({4});

  torch::manual_seed(123);
  TinyDetector b;
  auto opt_b =
      std::make_shared<torch::optim::AdamW>(b.parameters(), torch::optim::AdamWOptions(0.01));
  const auto loaded = load_checkpoint(dir.file("a.pt"), b, opt_b.get(), "AdamW", true);
  EXPECT_TRUE(at::equal(at::rand({4}), rng_after_save));
  EXPECT_EQ(loaded.state.iter, 2);
  EXPECT_EQ(loaded.state.epoch, 1);
  EXPECT_EQ(loaded.state.iter_in_epoch, 1);
  EXPECT_EQ(loaded.state.elapsed_seconds, 12.5);
  EXPECT_EQ(loaded.state.images_seen, 4);
  EXPECT_EQ(loaded.state.seed, 99u);
  EXPECT_EQ(loaded.meta.optimizer_type, "AdamW");
  EXPECT_EQ(loaded.meta.config_yaml, "runner: {}");
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& item : pa) EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << item.key();
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& item : ba) EXPECT_TRUE(at::equal(item.value(), bb[item.key()])) << item.key();
  // identical optimiser state: one more identical step gives identical parameters
  a.eval();
  b.eval();
  step(a, *opt_a);
  step(b, *opt_b);
  for (const auto& item : pa) EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << item.key();

  auto sgd = std::make_shared<torch::optim::SGD>(b.parameters(), torch::optim::SGDOptions(0.1));
  const auto wrong_type = error_of([&] { load_checkpoint(dir.file("a.pt"), b, sgd.get(), "SGD"); });
  EXPECT_NE(wrong_type.find("the checkpoint's optimizer is 'AdamW', the config asks for 'SGD'"),
            std::string::npos)
      << wrong_type;
}

TEST(Checkpoint, ArchitectureMismatchAndBadFilesAreNamed) {
  TinyDetector a;
  TempDir dir("mismatch");
  save_checkpoint(dir.file("a.pt"), a, nullptr, {}, {});
  struct Wider : torch::nn::Module {
    Wider() { register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3))); }
  } wider;
  const auto shape = error_of([&] { load_checkpoint(dir.file("a.pt"), wider); });
  EXPECT_NE(shape.find("model entry 'conv.weight' has shape [8, 3, 3, 3]"), std::string::npos)
      << shape;
  struct Other : torch::nn::Module {
    Other() { register_parameter("gamma", at::zeros({2})); }
  } other;
  const auto missing = error_of([&] { load_checkpoint(dir.file("a.pt"), other); });
  EXPECT_NE(missing.find("model parameter 'gamma' is missing"), std::string::npos) << missing;
  const auto absent = error_of([&] { load_checkpoint(dir.file("none.pt"), a); });
  EXPECT_NE(absent.find("checkpoint not found: " + dir.file("none.pt")), std::string::npos);
  std::ofstream(dir.file("junk.pt")) << "not a zip";
  const auto junk = error_of([&] { load_checkpoint(dir.file("junk.pt"), a); });
  EXPECT_NE(junk.find(dir.file("junk.pt") + ": not a zip archive"), std::string::npos) << junk;
}

TEST(Checkpoint, AtomicWriteLeavesNoPartialFile) {
  TinyDetector a;
  TempDir dir("atomic");
  // The target is a non-empty directory: the rename fails, the directory is untouched and no
  // temporary file stays behind.
  fs::create_directories(dir.path / "busy.pt");
  std::ofstream(dir.path / "busy.pt" / "keep") << "x";
  const auto err = error_of([&] { save_checkpoint(dir.file("busy.pt"), a, nullptr, {}, {}); });
  EXPECT_NE(err.find(dir.file("busy.pt")), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(dir.path / "busy.pt" / "keep"));
  // Overwriting an existing checkpoint replaces it whole.
  TrainState s1;
  s1.iter = 1;
  save_checkpoint(dir.file("c.pt"), a, nullptr, s1, {});
  TrainState s2;
  s2.iter = 2;
  save_checkpoint(dir.file("c.pt"), a, nullptr, s2, {});
  EXPECT_EQ(load_checkpoint(dir.file("c.pt"), a).state.iter, 2);
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

TEST(Evaluator, ConvertsLabelsAndBoxesToCocoResults) {
  Detections d;
  d.boxes = at::tensor({10.f, 20.f, 30.f, 60.f, 0.f, 0.f, 5.5f, 4.f}).reshape({2, 4});
  d.scores = at::tensor({0.9f, 0.25f});
  d.labels = at::tensor({1, 0}, at::kLong);
  const auto out = to_coco_detections(d, 42, {3, 7});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].image_id, 42);
  EXPECT_EQ(out[0].category_id, 7);
  EXPECT_EQ(out[0].bbox, (std::array<double, 4>{10, 20, 20, 40}));
  EXPECT_DOUBLE_EQ(out[0].score, static_cast<double>(0.9f));
  EXPECT_EQ(out[1].category_id, 3);
  EXPECT_EQ(out[1].bbox, (std::array<double, 4>{0, 0, 5.5, 4}));
  Detections empty;
  empty.boxes = at::zeros({0, 4});
  empty.scores = at::zeros({0});
  empty.labels = at::zeros({0}, at::kLong);
  EXPECT_TRUE(to_coco_detections(empty, 1, {3}).empty());
  const auto err = error_of([&] { to_coco_detections(d, 42, {3}); });
  EXPECT_NE(err.find("detections of image 42: label 1 outside the dataset's 1 classes"),
            std::string::npos)
      << err;
}

TEST(Evaluator, PerfectDetectorScoresApOne) {
  // A detector that returns the ground truth boxes scores AP = 1 with pycocotools semantics.
  struct Oracle : DetectorModel {
    std::map<std::string, at::Tensor> losses(const Batch&) override { return {}; }
    std::vector<Detections> predict(const Batch& batch) override {
      std::vector<Detections> out;
      for (int64_t i = 0; i < batch.size(); ++i) {
        out.push_back({batch.boxes[i], at::ones({batch.boxes[i].size(0)}), batch.labels[i]});
      }
      return out;
    }
    int64_t num_classes() const override { return 1; }
  } oracle;
  EvalData val;
  auto source = std::make_shared<MemorySource>(6, 4, 0, false);
  val.source = source;
  val.gt = source->ground_truth();
  val.label_to_category = {5};
  int after = 0;
  const auto result = evaluate_detector(oracle, val, {nullptr, [&] { ++after; }});
  EXPECT_EQ(after, 2);
  EXPECT_EQ(result.images, 6);
  EXPECT_EQ(result.detections.size(), 6u);
  const auto stats = coco_stats_map(result.coco);
  EXPECT_DOUBLE_EQ(stats.at("AP"), 1.0);
  EXPECT_DOUBLE_EQ(stats.at("AP50"), 1.0);
  EXPECT_TRUE(oracle.is_training());  // mode restored
}

}  // namespace
}  // namespace setdet

namespace setdet {
namespace {

// A process spinning on one core while training runs on two: the governor drops to one thread
// (the free core), and training ends with the thread count it started with.
TEST(Hooks, ThreadGovernorRunsOnTheFreeCores) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    volatile unsigned long spin = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < end) ++spin;
    _exit(0);
  }
  auto cfg = Config::parse(R"(
optimizer: {type: SGD, lr: 0.01}
runner: {max_iters: 1000000, max_seconds: 15, seed: 3}
hooks: [{type: ThreadGovernorHook, interval_seconds: 0.3}]
)",
                           "governor.yaml");
  auto s = make_setup(cfg, "");
  struct Threads : Hook {
    Threads() : Hook(priority::kLowest) {}
    std::string name() const override { return "Threads"; }
    void after_train_iter(Runner& r) override {
      seen.push_back(at::get_num_threads());
      if (seen.back() == 1) r.request_stop();
    }
    std::vector<int> seen;
  };
  auto probe = std::make_shared<Threads>();
  s.runner->register_hook(probe);
  MemorySource data(10, 3, 3);
  s.runner->train(data);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  const int after = at::get_num_threads();
  at::set_num_threads(threads);
  ASSERT_FALSE(probe->seen.empty());
  EXPECT_EQ(probe->seen.front(), 2);
  EXPECT_EQ(probe->seen.back(), 1) << "the governor kept " << probe->seen.back() << " threads";
  EXPECT_EQ(after, 2);
  EXPECT_THROW(HookRegistry().build(
                   Config::parse("{type: ThreadGovernorHook, interval_seconds: 0}", "g.yaml")),
               Error);
}

}  // namespace
}  // namespace setdet
