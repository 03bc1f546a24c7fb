#include "setdet/vrd/visual_model.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/functional/dropout.h>
#include <torch/nn/functional/loss.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "setdet/core/error.h"
#include "setdet/core/parallel.h"
#include "setdet/data/random.h"
#include "setdet/engine/autocast.h"
#include "setdet/engine/lr_schedule.h"
#include "setdet/engine/optim.h"
#include "setdet/layers/fused_conv_norm.h"

namespace setdet {
namespace {

constexpr uint64_t kOrderStream = 0x56495355414cULL;  // "VISUAL"

// The crops of pairs[order[begin..end)] as one [n, 5, S, S] batch.
at::Tensor crop_batch(const std::vector<cv::Mat>& images, const std::vector<VisualPair>& pairs,
                      const std::vector<int64_t>& order, int64_t begin, int64_t end,
                      const UnionCropOptions& crop) {
  const int64_t n = end - begin;
  const int64_t S = crop.size;
  at::Tensor batch = at::empty({n, kUnionCropChannels, S, S}, at::kFloat);
  float* data = batch.data_ptr<float>();
  parallel_for(0, n, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const VisualPair& p = pairs[static_cast<size_t>(order[static_cast<size_t>(begin + i)])];
      SETDET_CHECK(p.image >= 0 && p.image < static_cast<int32_t>(images.size()),
                   "visual model: pair of image ", p.image, " outside the ", images.size(),
                   " images");
      masked_union_crop(images[static_cast<size_t>(p.image)], p.subject, p.object, crop,
                        data + i * kUnionCropChannels * S * S);
    }
  });
  return batch.contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace

VisualRelationNetImpl::VisualRelationNetImpl(const Config& backbone, int64_t num_predicates,
                                             std::array<int64_t, 2> hidden, double dropout)
    : dropout_(dropout), num_predicates_(num_predicates) {
  SETDET_CHECK(num_predicates > 0, "visual model: needs at least one predicate");
  SETDET_CHECK(hidden[0] > 0 && hidden[1] > 0, "visual model: hidden widths must be positive, got ",
               hidden[0], ", ", hidden[1]);
  SETDET_CHECK(dropout >= 0.0 && dropout < 1.0, "visual model: dropout must be in [0, 1), got ",
               dropout);
  backbone_ = register_module("backbone", BackboneRegistry().build(backbone));
  const auto shapes = backbone_->output_shape();
  SETDET_CHECK(!shapes.empty(), backbone.where(), ": the backbone has no outputs");
  const int64_t channels = shapes.back().channels;
  fc1_ = register_module("fc1", torch::nn::Linear(channels, hidden[0]));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden[0], hidden[1]));
  fc3_ = register_module("fc3", torch::nn::Linear(hidden[1], num_predicates));
}

at::Tensor VisualRelationNetImpl::forward(const at::Tensor& crops) {
  TORCH_CHECK(crops.dim() == 4 && crops.size(1) == kUnionCropChannels,
              "visual model: crops must be [B, ", kUnionCropChannels, ", S, S], got ",
              crops.sizes());
  at::Tensor x = backbone_->forward(crops).back().mean({2, 3});
  namespace F = torch::nn::functional;
  const auto drop = F::DropoutFuncOptions().p(dropout_).training(is_training());
  x = fc1_(F::dropout(x, drop)).relu();
  x = fc2_(F::dropout(x, drop)).relu();
  return fc3_(F::dropout(x, drop));
}

int64_t load_backbone_weights(const std::string& origin, const NamedTensors& source,
                              const std::string& prefix, Backbone& backbone) {
  std::unordered_map<std::string, at::Tensor> by_name(source.begin(), source.end());
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  const auto plan = [&](const std::string& name, const at::Tensor& dst) {
    const auto it = by_name.find(prefix + name);
    SETDET_CHECK(it != by_name.end(), origin, ": no tensor '", prefix + name,
                 "' for the visual model's backbone tensor '", name, "'");
    const at::Tensor& src = it->second;
    const bool more_planes = src.dim() == dst.dim() && src.dim() >= 2 &&
                             src.size(0) == dst.size(0) && src.size(1) < dst.size(1) &&
                             src.sizes().slice(2) == dst.sizes().slice(2);
    SETDET_CHECK(src.sizes() == dst.sizes() || more_planes, origin, ": tensor '", prefix + name,
                 "' has shape ", src.sizes(), ", the visual model's backbone needs ", dst.sizes());
    copies.emplace_back(dst, src);
  };
  for (const auto& p : backbone.named_parameters(/*recurse=*/true)) plan(p.key(), p.value());
  for (const auto& b : backbone.named_buffers(/*recurse=*/true)) plan(b.key(), b.value());
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) {
    if (src.sizes() == dst.sizes()) {
      dst.copy_(src);
    } else {
      dst.zero_();
      dst.narrow(1, 0, src.size(1)).copy_(src);
    }
  }
  return static_cast<int64_t>(copies.size());
}

void train_visual_model(VisualRelationNet& net, const std::vector<cv::Mat>& images,
                        const std::vector<VisualPair>& pairs, const VisualTrainOptions& options,
                        const std::function<void(const VisualTrainProgress&)>& progress) {
  SETDET_CHECK(!pairs.empty(), "visual model: no training pairs");
  SETDET_CHECK(options.batch_size > 0, "visual model: batch_size must be positive, got ",
               options.batch_size);
  const int64_t P = net->num_predicates();
  for (const auto& p : pairs) {
    SETDET_CHECK(static_cast<int64_t>(p.labels.size()) == P, "visual model: a pair has ",
                 p.labels.size(), " labels for ", P, " predicates");
  }
  const auto N = static_cast<int64_t>(pairs.size());
  const int64_t per_epoch = (N + options.batch_size - 1) / options.batch_size;
  const int64_t max_iters = options.max_iters > 0 ? options.max_iters : options.epochs * per_epoch;
  SETDET_CHECK(max_iters > 0, "visual model: nothing to train (epochs ", options.epochs,
               ", max_iters ", options.max_iters, ")");

  auto optimizer = build_optimizer(options.optimizer, *net);
  auto schedule = build_lr_schedule(options.lr_schedule);
  TrainProgress limits;
  limits.iters_per_epoch = per_epoch;
  limits.max_iters = max_iters;
  schedule->check_limits(limits);
  const std::vector<double> base = group_lrs(*optimizer);

  net->train();
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto last_report = start;
  double loss_sum = 0.0;
  int64_t loss_count = 0, pairs_since = 0;
  std::vector<int64_t> order;
  int64_t iter = 0;
  for (int64_t epoch = 0; iter < max_iters; ++epoch) {
    order.resize(static_cast<size_t>(N));
    std::iota(order.begin(), order.end(), 0);
    Rng rng({options.seed, kOrderStream, static_cast<uint64_t>(epoch)});
    shuffle(order, rng);
    for (int64_t b = 0; b < per_epoch && iter < max_iters; ++b, ++iter) {
      TrainProgress p = limits;
      p.iter = iter;
      p.epoch = epoch;
      const double factor = schedule->factor(p);
      std::vector<double> lrs(base);
      for (double& lr : lrs) lr *= factor;
      set_group_lrs(*optimizer, lrs);

      const int64_t begin = b * options.batch_size;
      const int64_t end = std::min(N, begin + options.batch_size);
      const at::Tensor crops = crop_batch(images, pairs, order, begin, end, options.crop);
      at::Tensor target = at::empty({end - begin, P}, at::kFloat);
      float* t = target.data_ptr<float>();
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t k = 0; k < P; ++k) *t++ = pairs[static_cast<size_t>(order[i])].labels[k];
      }
      at::Tensor logits;
      {
        const AutocastGuard autocast(options.autocast, c10::DeviceType::CPU);
        logits = net->forward(crops);
      }
      const at::Tensor loss =
          torch::nn::functional::binary_cross_entropy_with_logits(logits.to(at::kFloat), target);
      SETDET_CHECK(std::isfinite(loss.item<double>()), "visual model: the loss is ",
                   loss.item<double>(), " at iteration ", iter);
      optimizer->zero_grad();
      loss.backward();
      optimizer->step();
      loss_sum += loss.item<double>();
      ++loss_count;
      pairs_since += end - begin;

      const bool last = iter + 1 == max_iters;
      if (progress && ((iter + 1) % options.log_interval == 0 || last)) {
        const auto now = Clock::now();
        const double dt = std::chrono::duration<double>(now - last_report).count();
        progress({iter + 1, max_iters, epoch, loss_sum / static_cast<double>(loss_count),
                  lrs.empty() ? 0.0 : lrs[0], dt > 0 ? static_cast<double>(pairs_since) / dt : 0.0,
                  std::chrono::duration<double>(now - start).count()});
        last_report = now;
        loss_sum = 0.0;
        loss_count = 0;
        pairs_since = 0;
      }
    }
  }
  net->eval();
}

std::vector<float> predict_visual(VisualRelationNet& net, const std::vector<cv::Mat>& images,
                                  const std::vector<VisualPair>& pairs,
                                  const UnionCropOptions& crop, int64_t batch_size) {
  const int64_t P = net->num_predicates();
  std::vector<float> out(pairs.size() * static_cast<size_t>(P));
  if (pairs.empty()) return out;
  const bool was_training = net->is_training();
  net->eval();
  fuse_for_inference(*net);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> order(pairs.size());
  std::iota(order.begin(), order.end(), 0);
  const auto N = static_cast<int64_t>(pairs.size());
  for (int64_t begin = 0; begin < N; begin += batch_size) {
    const int64_t end = std::min(N, begin + batch_size);
    const at::Tensor probs =
        net->forward(crop_batch(images, pairs, order, begin, end, crop)).sigmoid().contiguous();
    std::copy(probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel(),
              out.begin() + begin * P);
  }
  net->train(was_training);
  return out;
}

}  // namespace setdet
