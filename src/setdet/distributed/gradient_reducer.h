// Data-parallel gradients with c10d's Reducer (the engine of torch.nn.parallel.
// DistributedDataParallel): the trainable parameters are split into buckets (the first 1 MB,
// then `bucket_size_mb`, in reverse registration order, as DDP); autograd hooks start the
// all-reduce of a bucket as soon as its gradients are ready, overlapping the rest of the backward
// pass, and backward() returns with every gradient averaged over the ranks. After the first
// iteration the buckets are rebuilt in the order the gradients actually became ready.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <memory>

#include "setdet/distributed/process_group.h"

namespace setdet::dist {

class GradientReducer {
 public:
  // Every parameter of `model` that requires grad. find_unused_parameters: parameters that get
  // no gradient in an iteration are found by walking the graph from the loss (slower; without it
  // such a parameter is an error naming it at the next iteration).
  GradientReducer(torch::nn::Module& model, ProcessGroup& group, double bucket_size_mb,
                  bool find_unused_parameters);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before each training forward.
  void before_forward();
  // After the forward, before loss.backward().
  void before_backward(const at::Tensor& loss);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The element counts of the buckets GradientReducer forms for `params` (in launch order).
std::vector<int64_t> gradient_buckets(const std::vector<at::Tensor>& params, double bucket_size_mb);

// Seconds of each of `repeats` gradient all-reduces (after `warmup` untimed ones) of float32
// buckets of these sizes on the gradient group, as the reducer runs them: every bucket's
// all-reduce launched, then all awaited.
std::vector<double> time_gradient_all_reduce(ProcessGroup& group,
                                             const std::vector<int64_t>& bucket_numels, int repeats,
                                             int warmup);

// Sets every parameter and buffer of `model` to rank `root`'s (DDP's start-of-training sync).
// buffers_only: only the buffers (BatchNorm statistics, before an evaluation).
void broadcast_module_state(torch::nn::Module& model, ProcessGroup& group, bool buffers_only,
                            int root = 0);

}  // namespace setdet::dist
