// How the ranks of one training run find each other: torchrun's environment (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and a c10d TCPStore at
// MASTER_ADDR:MASTER_PORT. Rank 0 hosts the store, unless TORCHELASTIC_USE_AGENT_STORE=True says
// a launcher does (torchrun's static rendezvous, `setdet train --nproc`).
//
// Config (top-level `distributed`, all optional):
//   distributed: {backend: gloo, timeout: 300, bucket_size_mb: 25, find_unused_parameters: false}
// timeout (seconds): rendezvous and every collective; a rank that died, stopped or hangs makes the
// others fail with an error naming it within this time.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "setdet/config/config.h"
#include "setdet/distributed/process_group.h"

namespace setdet::dist {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr;
  int master_port = 0;
  bool agent_store = false;  // a launcher hosts the store: every rank connects as a client
  int restart_count = 0;     // TORCHELASTIC_RESTART_COUNT: keys of earlier attempts are ignored
};

// torchrun's variables; nullopt when WORLD_SIZE is unset. A missing or malformed variable is an
// error naming it.
std::optional<LaunchEnv> launch_env_from_environment();

struct DistOptions {
  std::string backend = "gloo";
  double timeout_seconds = 300.0;
  double bucket_size_mb = 25.0;  // gradient bucket size (the first bucket: 1 MB, as DDP)
  bool find_unused_parameters = false;

  static DistOptions from_config(const std::optional<Config>& cfg);
};

// Joins the run's process group (blocks until every rank has joined, at most the timeout).
std::shared_ptr<ProcessGroup> init_process_group(const LaunchEnv& env, const DistOptions& options);

// The interval at which ranks beat: a tenth of the timeout, between 0.2 and 2 seconds.
std::chrono::milliseconds heartbeat_interval(double timeout_seconds);

}  // namespace setdet::dist
