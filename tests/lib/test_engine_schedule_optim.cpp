// LR schedules (warm-up, steps, cosine by iterations / epochs / time) and optimiser builders.
#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>

#include "setdet/config/config.h"
#include "setdet/engine/lr_schedule.h"
#include "setdet/engine/optim.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

std::shared_ptr<LrSchedule> schedule(const std::string& yaml) {
  return build_lr_schedule(Config::parse(yaml, "sched.yaml")["lr_schedule"]);
}

TrainProgress at_iter(int64_t iter, int64_t max_iters) {
  TrainProgress p;
  p.iter = iter;
  p.max_iters = max_iters;
  return p;
}

TEST(LrSchedule, LinearWarmupFollowsMmcvFormula) {
  auto s = schedule(
      "lr_schedule: {type: Constant, warmup: linear, warmup_iters: 10, "
      "warmup_ratio: 0.001}");
  // lr = base * (1 - (1 - i/10) * (1 - 0.001))
  EXPECT_DOUBLE_EQ(s->factor(at_iter(0, 100)), 0.001);
  EXPECT_DOUBLE_EQ(s->factor(at_iter(5, 100)), 1.0 - 0.5 * 0.999);
  EXPECT_DOUBLE_EQ(s->factor(at_iter(9, 100)), 1.0 - 0.1 * 0.999);
  EXPECT_DOUBLE_EQ(s->factor(at_iter(10, 100)), 1.0);
  EXPECT_DOUBLE_EQ(s->factor(at_iter(50, 100)), 1.0);
}

TEST(LrSchedule, ConstantWarmupAndNoWarmup) {
  auto c = schedule(
      "lr_schedule: {type: Constant, warmup: constant, warmup_iters: 4, "
      "warmup_ratio: 0.25}");
  EXPECT_DOUBLE_EQ(c->factor(at_iter(3, 0)), 0.25);
  EXPECT_DOUBLE_EQ(c->factor(at_iter(4, 0)), 1.0);
  auto none = build_lr_schedule(std::nullopt);
  EXPECT_DOUBLE_EQ(none->factor(at_iter(0, 0)), 1.0);
}

TEST(LrSchedule, StepDropsAtEpochsAndIterations) {
  auto by_epoch = schedule("lr_schedule: {type: Step, steps: [8, 11], gamma: 0.1}");
  TrainProgress p;
  p.iter = 1000;
  for (int64_t e : {0, 7}) {
    p.epoch = e;
    EXPECT_DOUBLE_EQ(by_epoch->factor(p), 1.0) << e;
  }
  p.epoch = 8;
  EXPECT_DOUBLE_EQ(by_epoch->factor(p), 0.1);
  p.epoch = 10;
  EXPECT_DOUBLE_EQ(by_epoch->factor(p), 0.1);
  p.epoch = 11;
  EXPECT_NEAR(by_epoch->factor(p), 0.01, 1e-15);

  auto by_iter = schedule(
      "lr_schedule: {type: Step, steps: [100], gamma: 0.5, by_epoch: false, "
      "warmup_iters: 10, warmup_ratio: 0.1}");
  EXPECT_DOUBLE_EQ(by_iter->factor(at_iter(0, 0)), 0.1);
  EXPECT_DOUBLE_EQ(by_iter->factor(at_iter(99, 0)), 1.0);
  EXPECT_DOUBLE_EQ(by_iter->factor(at_iter(100, 0)), 0.5);
}

TEST(LrSchedule, CosineByIterationsAtKnownPoints) {
  auto s = schedule("lr_schedule: {type: Cosine, min_lr_ratio: 0.1}");
  // m + (1 - m) * (1 + cos(pi t)) / 2 with m = 0.1
  EXPECT_DOUBLE_EQ(s->factor(at_iter(0, 200)), 1.0);
  EXPECT_NEAR(s->factor(at_iter(50, 200)), 0.1 + 0.9 * (1 + std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_NEAR(s->factor(at_iter(100, 200)), 0.55, 1e-15);
  EXPECT_NEAR(s->factor(at_iter(200, 200)), 0.1, 1e-15);
  EXPECT_NEAR(s->factor(at_iter(500, 200)), 0.1, 1e-15);  // clamped past the end
  // max_epochs * iters_per_epoch stands in for max_iters
  TrainProgress p;
  p.iter = 30;
  p.max_epochs = 3;
  p.iters_per_epoch = 20;
  EXPECT_NEAR(s->factor(p), 0.55, 1e-15);
}

TEST(LrSchedule, CosineByEpochIsConstantWithinAnEpoch) {
  auto s = schedule("lr_schedule: {type: Cosine, by_epoch: true}");
  TrainProgress p;
  p.max_epochs = 4;
  p.epoch = 2;
  p.iter = 0;
  const double a = s->factor(p);
  p.iter = 77;
  EXPECT_DOUBLE_EQ(s->factor(p), a);
  EXPECT_NEAR(a, 0.5, 1e-15);
}

TEST(LrSchedule, CosineKeyedToTimeBudget) {
  auto s = schedule(
      "lr_schedule: {type: Cosine, by_time: true, warmup_iters: 5, "
      "warmup_ratio: 0.2}");
  TrainProgress p;
  p.max_seconds = 420.0;
  p.iter = 1000;  // past warm-up
  for (double t : {0.0, 105.0, 210.0, 315.0, 420.0, 500.0}) {
    p.elapsed_seconds = t;
    const double progress = std::min(t / 420.0, 1.0);
    EXPECT_NEAR(s->factor(p), 0.5 * (1 + std::cos(M_PI * progress)), 1e-15) << t;
  }
  // warm-up multiplies the time-keyed value
  p.iter = 2;
  p.elapsed_seconds = 210.0;
  EXPECT_NEAR(s->factor(p), 0.5 * (1.0 - (1.0 - 2.0 / 5.0) * 0.8), 1e-15);
}

TEST(LrSchedule, LimitsAndConfigErrorsNameTheKey) {
  auto by_time = schedule("lr_schedule: {type: Cosine, by_time: true}");
  TrainProgress limits;
  limits.max_iters = 100;
  EXPECT_NE(error_of([&] { by_time->check_limits(limits); }).find("runner.max_seconds"),
            std::string::npos);
  auto by_iter = schedule("lr_schedule: {type: Cosine}");
  limits = TrainProgress{};
  limits.max_seconds = 10;
  EXPECT_NE(error_of([&] { by_iter->check_limits(limits); }).find("max_iters"), std::string::npos);

  const auto unknown_type = error_of([] { schedule("lr_schedule: {type: Poly}"); });
  EXPECT_NE(unknown_type.find("sched.yaml: lr_schedule.type: unknown lr schedule 'Poly'"),
            std::string::npos)
      << unknown_type;
  EXPECT_NE(unknown_type.find("Constant, Cosine, Step"), std::string::npos) << unknown_type;
  const auto unknown_key = error_of([] { schedule("lr_schedule: {type: Cosine, eta_min: 0}"); });
  EXPECT_NE(unknown_key.find("unknown key 'lr_schedule.eta_min'"), std::string::npos)
      << unknown_key;
  const auto both =
      error_of([] { schedule("lr_schedule: {type: Cosine, by_time: true, by_epoch: true}"); });
  EXPECT_NE(both.find("exclusive"), std::string::npos) << both;
  const auto bad_warmup =
      error_of([] { schedule("lr_schedule: {type: Constant, warmup: exp, warmup_iters: 3}"); });
  EXPECT_NE(bad_warmup.find("lr_schedule.warmup"), std::string::npos) << bad_warmup;
}

struct TinyNet : torch::nn::Module {
  TinyNet() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)));
    bn = register_module("bn", torch::nn::BatchNorm2d(4));
    fc = register_module("fc", torch::nn::Linear(4, 2));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};

std::shared_ptr<torch::optim::Optimizer> optimizer(const std::string& yaml, TinyNet& net) {
  return build_optimizer(Config::parse(yaml, "optim.yaml")["optimizer"], net);
}

TEST(Optimizer, AdamWGroupsNormAndBiasWithoutDecay) {
  TinyNet net;
  auto opt = optimizer(
      "optimizer: {type: AdamW, lr: 2.0e-3, weight_decay: 0.05, betas: [0.8, "
      "0.9], paramwise: {norm_decay_mult: 0.0, bias_decay_mult: 0.0}}",
      net);
  auto* adamw = dynamic_cast<torch::optim::AdamW*>(opt.get());
  ASSERT_NE(adamw, nullptr);
  ASSERT_EQ(opt->param_groups().size(), 2u);
  // group 0: conv.weight, fc.weight (decay); group 1: conv.bias, bn.weight, bn.bias, fc.bias
  EXPECT_EQ(opt->param_groups()[0].params().size(), 2u);
  EXPECT_EQ(opt->param_groups()[1].params().size(), 4u);
  EXPECT_EQ(group_weight_decays(*opt), (std::vector<double>{0.05, 0.0}));
  EXPECT_EQ(group_lrs(*opt), (std::vector<double>{2e-3, 2e-3}));
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(opt->param_groups()[0].options());
  EXPECT_DOUBLE_EQ(std::get<0>(o.betas()), 0.8);
  EXPECT_DOUBLE_EQ(std::get<1>(o.betas()), 0.9);
  EXPECT_TRUE(opt->param_groups()[0].params()[0].is_same(net.conv->weight));

  const auto groups = make_param_groups(net, 0.05, 0.0, 1.0);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].names,
            (std::vector<std::string>{"conv.weight", "conv.bias", "fc.weight", "fc.bias"}));
  EXPECT_EQ(groups[1].names, (std::vector<std::string>{"bn.weight", "bn.bias"}));
}

TEST(Optimizer, SgdMomentumAndFrozenParametersSkipped) {
  TinyNet net;
  net.conv->weight.set_requires_grad(false);
  auto opt =
      optimizer("optimizer: {type: SGD, lr: 0.02, momentum: 0.9, weight_decay: 1.0e-4}", net);
  auto* sgd = dynamic_cast<torch::optim::SGD*>(opt.get());
  ASSERT_NE(sgd, nullptr);
  ASSERT_EQ(opt->param_groups().size(), 1u);
  EXPECT_EQ(opt->param_groups()[0].params().size(), 5u);  // all but the frozen conv.weight
  const auto& o = static_cast<const torch::optim::SGDOptions&>(opt->param_groups()[0].options());
  EXPECT_DOUBLE_EQ(o.lr(), 0.02);
  EXPECT_DOUBLE_EQ(o.momentum(), 0.9);
  EXPECT_DOUBLE_EQ(o.weight_decay(), 1e-4);
  set_group_lrs(*opt, {0.5});
  EXPECT_EQ(group_lrs(*opt), std::vector<double>{0.5});
}

TEST(Optimizer, ConfigErrorsNameFileKeyAndChoices) {
  TinyNet net;
  const auto type = error_of([&] { optimizer("optimizer: {type: Adam, lr: 1}", net); });
  EXPECT_NE(type.find("optim.yaml: optimizer.type: unknown optimizer 'Adam' (known: AdamW, SGD)"),
            std::string::npos)
      << type;
  const auto key = error_of([&] { optimizer("optimizer: {type: SGD, lr: 1, betas: [0.9]}", net); });
  EXPECT_NE(key.find("optim.yaml: unknown key 'optimizer.betas'"), std::string::npos) << key;
  const auto paramwise =
      error_of([&] { optimizer("optimizer: {type: SGD, paramwise: {norm_decay: 0}}", net); });
  EXPECT_NE(paramwise.find("unknown key 'optimizer.paramwise.norm_decay'"), std::string::npos)
      << paramwise;
  const auto lr = error_of([&] { optimizer("optimizer: {type: AdamW, lr: -1}", net); });
  EXPECT_NE(lr.find("optimizer.lr: expected > 0, got -1"), std::string::npos) << lr;
  const auto text = error_of([&] { optimizer("optimizer: {type: AdamW, lr: fast}", net); });
  EXPECT_NE(text.find("optimizer.lr: expected a number, got 'fast'"), std::string::npos) << text;
  const auto missing = error_of([&] { optimizer("optimizer: {lr: 1}", net); });
  EXPECT_NE(missing.find("needs a 'type' key (known: AdamW, SGD)"), std::string::npos) << missing;
}

}  // namespace
}  // namespace setdet
