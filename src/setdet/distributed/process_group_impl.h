// The c10d objects behind a setdet::dist::ProcessGroup, for the distributed/ sources and the
// tests (which build groups of in-process ranks over a shared c10d::HashStore).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "setdet/distributed/monitor.h"
#include "setdet/distributed/process_group.h"

namespace setdet::dist {

struct ProcessGroup::Impl {
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds timeout{300000};
  std::chrono::milliseconds heartbeat{1000};
  bool hosts_store = false;                          // this process serves the TCPStore
  c10::intrusive_ptr<c10d::Store> store;             // this run's key space
  c10::intrusive_ptr<c10d::ProcessGroup> main;       // synchronous collectives (this header's API)
  c10::intrusive_ptr<c10d::ProcessGroup> gradients;  // the gradient reducer's buckets
  std::unique_ptr<RankMonitor> monitor;              // heartbeat and failure reports
  std::atomic<int64_t> collectives{0};               // collectives entered on `main`
};

// Two Gloo groups (main, gradients) of `world_size` ranks over `store`, with `timeout` for every
// collective, and a RankMonitor beating every `heartbeat` through `monitor_store` (a second
// connection to the same store, so a blocked collective never delays a heartbeat).
// loopback: Gloo talks over 127.0.0.1 (else GLOO_SOCKET_IFNAME's interfaces or the host name).
std::shared_ptr<ProcessGroup> create_gloo_process_group(
    const c10::intrusive_ptr<c10d::Store>& store,
    const c10::intrusive_ptr<c10d::Store>& monitor_store, int rank, int world_size,
    std::chrono::milliseconds timeout, std::chrono::milliseconds heartbeat, bool loopback);

}  // namespace setdet::dist
