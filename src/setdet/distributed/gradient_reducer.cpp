#include "setdet/distributed/gradient_reducer.h"

#include <fmt/format.h>

#include <chrono>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <tuple>
#include <unordered_map>

#include "setdet/distributed/process_group_impl.h"

namespace setdet::dist {
namespace {

// DDP's buckets: 1 MB first, then `bucket_size_mb`, in reverse parameter order.
std::tuple<std::vector<std::vector<size_t>>, std::vector<size_t>> assign_buckets(
    const std::vector<at::Tensor>& params, double bucket_size_mb) {
  const auto cap = static_cast<size_t>(bucket_size_mb * 1024.0 * 1024.0);
  return c10d::compute_bucket_assignment_by_size(
      params, {static_cast<size_t>(c10d::kDefaultFirstBucketBytes), cap},
      std::vector<bool>(params.size(), false), {}, c10::nullopt);
}

}  // namespace

struct GradientReducer::State {
  std::unique_ptr<c10d::Reducer> reducer;
  bool find_unused_parameters = false;
};

GradientReducer::GradientReducer(torch::nn::Module& model, ProcessGroup& group,
                                 double bucket_size_mb, bool find_unused_parameters)
    : state_(std::make_unique<State>()) {
  std::vector<at::Tensor> params;
  std::unordered_map<size_t, std::string> names;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) {
    if (!p.value().requires_grad()) continue;
    names[params.size()] = p.key();
    params.push_back(p.value());
  }
  SETDET_CHECK(!params.empty(), "data-parallel training: the model has no trainable parameter");
  const auto pg = group.impl().gradients;
  // Every rank must hold the same parameters (same config): an error names the first mismatch.
  c10d::verify_params_across_processes(pg, params, c10::nullopt);
  const auto cap = static_cast<int64_t>(bucket_size_mb * 1024.0 * 1024.0);
  const std::vector<bool> sparse(params.size(), false);
  auto [buckets, limits] = assign_buckets(params, bucket_size_mb);
  state_->find_unused_parameters = find_unused_parameters;
  state_->reducer = std::make_unique<c10d::Reducer>(
      params, std::move(buckets), std::move(limits), pg, sparse, cap, find_unused_parameters,
      /*gradient_as_bucket_view=*/false, std::move(names), c10d::kDefaultFirstBucketBytes);
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::before_forward() {
  state_->reducer->rebuild_buckets();
  state_->reducer->prepare_for_forward();
}

void GradientReducer::before_backward(const at::Tensor& loss) {
  if (state_->find_unused_parameters) {
    state_->reducer->prepare_for_backward({loss});
  } else {
    state_->reducer->prepare_for_backward({});
  }
}

std::vector<int64_t> gradient_buckets(const std::vector<at::Tensor>& params,
                                      double bucket_size_mb) {
  const auto [buckets, limits] = assign_buckets(params, bucket_size_mb);
  std::vector<int64_t> numels;
  for (const auto& bucket : buckets) {
    int64_t n = 0;
    for (const size_t i : bucket) n += params[i].numel();
    numels.push_back(n);
  }
  return numels;
}

std::vector<double> time_gradient_all_reduce(ProcessGroup& group,
                                             const std::vector<int64_t>& bucket_numels, int repeats,
                                             int warmup) {
  std::vector<at::Tensor> buckets;
  for (const int64_t n : bucket_numels) buckets.push_back(at::ones({n}, at::kFloat));
  std::vector<double> seconds;
  for (int i = 0; i < warmup + repeats; ++i) {
    group.barrier();
    const auto start = std::chrono::steady_clock::now();
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& b : buckets) {
      std::vector<at::Tensor> one{b};
      works.push_back(group.impl().gradients->allreduce(one));
    }
    for (auto& w : works) w->wait();
    if (i >= warmup) {
      seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  return seconds;
}

void broadcast_module_state(torch::nn::Module& model, ProcessGroup& group, bool buffers_only,
                            int root) {
  std::vector<at::Tensor> tensors;
  if (!buffers_only) {
    for (const auto& p : model.parameters(/*recurse=*/true)) tensors.push_back(p.detach());
  }
  for (const auto& b : model.buffers(/*recurse=*/true)) tensors.push_back(b.detach());
  torch::NoGradGuard no_grad;
  group.broadcast(tensors, root);
}

}  // namespace setdet::dist
