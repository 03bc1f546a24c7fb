// Data-parallel processes (MMDetection's torch.distributed semantics on LibTorch's c10d): every
// process ("rank") runs the same model on its share of each global batch; the ranks talk through
// a ProcessGroup. In one process there is no group and every function here is the identity.
//
// Collectives are called in the same order on every rank (the runner's per-iteration sync, the
// detectors' normalisers, SyncBatchNorm, evaluation); the gradient all-reduce runs on a second,
// separate c10d group (gradient_reducer.h), so its asynchronous buckets never interleave with
// these. A collective that fails (a peer died, or did not arrive within the timeout) throws
// CommunicationError; describe_failure() then names the ranks at fault.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "setdet/core/error.h"

namespace setdet::dist {

// A collective failed: a peer died, stopped or did not reach it within the timeout.
class CommunicationError : public Error {
 public:
  using Error::Error;
};

class ProcessGroup {
 public:
  struct Impl;  // the c10d objects (process_group_impl.h)
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int world_size() const;

  // Sum over ranks, in place (a tensor of any dtype and device the backend supports).
  void all_reduce_sum(at::Tensor& tensor);
  // Sum over ranks of each value (in float64).
  std::vector<double> all_reduce_sum(const std::vector<double>& values);
  // Sets every tensor to root's values (coalesced into a few messages).
  void broadcast(std::vector<at::Tensor>& tensors, int root = 0);
  // Root receives every rank's bytes (in rank order); the other ranks receive nothing.
  std::vector<std::string> gather_bytes(const std::string& bytes, int root = 0);
  // Every rank receives root's bytes.
  std::string broadcast_bytes(const std::string& bytes, int root = 0);
  void barrier();

  // The report after a failed collective: which other ranks failed (with their own messages),
  // died or stopped, or are alive but behind, then this rank's `error`. Waits 3 heartbeat
  // intervals to tell a dead rank from a slow one.
  std::string describe_failure(const std::string& error);
  // Publishes this rank's own error (not a communication failure) for the other ranks' reports.
  void report_failure(const std::string& message);

  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// The process-wide group (nullptr: one process). A thread may override it for its own calls
// (ScopedProcessGroup), so tests run several ranks as threads of one process.
ProcessGroup* current_process_group();
void set_process_group(std::shared_ptr<ProcessGroup> group);
std::shared_ptr<ProcessGroup> process_group_ptr();

class ScopedProcessGroup {
 public:
  explicit ScopedProcessGroup(ProcessGroup* group);
  ~ScopedProcessGroup();
  ScopedProcessGroup(const ScopedProcessGroup&) = delete;
  ScopedProcessGroup& operator=(const ScopedProcessGroup&) = delete;

 private:
  ProcessGroup* previous_;
  bool previous_set_;
};

inline int rank() { return current_process_group() ? current_process_group()->rank() : 0; }
inline int world_size() {
  return current_process_group() ? current_process_group()->world_size() : 1;
}
// Rank 0 (or the only process): the one that writes logs, checkpoints and metrics.
inline bool is_main_process() { return rank() == 0; }

// The normaliser of a loss summed over this process's images, for counts taken over the batch
// (positives, sampled anchors, RoIs, images with positives, ...): the mean of `local` over the
// processes (MMDetection's reduce_mean). Each rank divides its local sum by it and the gradient
// all-reduce averages the ranks, which together divide the sum over all images by the count over
// all images, exactly as one process with the whole batch does. `local` itself in one process.
// Every rank must call it the same number of times per iteration, whatever its data.
double reduce_normaliser(double local);
// Several normalisers in one collective.
std::vector<double> reduce_normalisers(const std::vector<double>& local);

// Whether `e` came from the communication layer (a collective, the rendezvous, Gloo).
bool is_communication_failure(const std::exception& e);

// The end of a rank that cannot go on: prints "setdet: error: rank R: ..." with its own error, or
// after a failed collective with who is at fault (ProcessGroup::describe_failure), publishes its
// own error for the other ranks' reports, and exits with `code` at once. c10d's objects are not
// destroyed: their destructors would wait for peers that are gone. A rank hosting the
// rendezvous store first gives the others time to read it.
[[noreturn]] void exit_after_failure(ProcessGroup& group, const std::exception& e, int code = 1);

}  // namespace setdet::dist
