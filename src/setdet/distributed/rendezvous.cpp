#include "setdet/distributed/rendezvous.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "setdet/distributed/process_group_impl.h"

namespace setdet::dist {
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, std::optional<int> fallback, int min_value) {
  const auto text = env(name);
  SETDET_CHECK(text || fallback, "distributed launch: the environment variable ", name,
               " is not set (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, "
               "MASTER_PORT)");
  if (!text) return *fallback;
  int value = 0;
  size_t used = 0;
  try {
    value = std::stoi(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SETDET_CHECK(used == text->size() && !text->empty() && value >= min_value,
               "distributed launch: ", name, " must be an integer >= ", min_value, ", got '", *text,
               "'");
  return value;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

}  // namespace

std::optional<LaunchEnv> launch_env_from_environment() {
  if (!env("WORLD_SIZE")) return std::nullopt;
  LaunchEnv e;
  e.world_size = env_int("WORLD_SIZE", std::nullopt, 1);
  e.rank = env_int("RANK", std::nullopt, 0);
  SETDET_CHECK(e.rank < e.world_size, "distributed launch: RANK must be < WORLD_SIZE (",
               e.world_size, "), got ", e.rank);
  e.local_rank = env_int("LOCAL_RANK", 0, 0);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", 1, 1);
  SETDET_CHECK(e.local_rank < e.local_world_size,
               "distributed launch: LOCAL_RANK must be < LOCAL_WORLD_SIZE (", e.local_world_size,
               "), got ", e.local_rank);
  e.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0, 0);
  if (e.world_size == 1 && !env("MASTER_ADDR")) return e;
  e.master_addr = env("MASTER_ADDR").value_or("");
  SETDET_CHECK(!e.master_addr.empty(),
               "distributed launch: MASTER_ADDR is not set (the host of rank 0 or of the "
               "launcher's store)");
  e.master_port = env_int("MASTER_PORT", std::nullopt, 1);
  SETDET_CHECK(e.master_port <= 65535, "distributed launch: MASTER_PORT must be <= 65535, got ",
               e.master_port);
  const auto agent = env("TORCHELASTIC_USE_AGENT_STORE");
  e.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
  return e;
}

DistOptions DistOptions::from_config(const std::optional<Config>& cfg) {
  DistOptions o;
  if (!cfg || cfg->node().IsNull()) return o;
  cfg->check_keys({"backend", "timeout", "bucket_size_mb", "find_unused_parameters"});
  o.backend = cfg->get<std::string>("backend", o.backend);
  SETDET_CHECK(o.backend == "gloo" || o.backend == "nccl", cfg->where(),
               ".backend: expected gloo or nccl, got '", o.backend, "'");
  SETDET_CHECK(o.backend == "gloo", cfg->where(),
               ".backend: nccl is not implemented yet (setdet's collectives run through c10d's "
               "Gloo process group); use gloo");
  o.timeout_seconds = cfg->get<double>("timeout", o.timeout_seconds);
  SETDET_CHECK(o.timeout_seconds > 0, cfg->where(), ".timeout: expected seconds > 0, got ",
               o.timeout_seconds);
  o.bucket_size_mb = cfg->get<double>("bucket_size_mb", o.bucket_size_mb);
  SETDET_CHECK(o.bucket_size_mb > 0, cfg->where(), ".bucket_size_mb: expected > 0, got ",
               o.bucket_size_mb);
  o.find_unused_parameters = cfg->get<bool>("find_unused_parameters", o.find_unused_parameters);
  return o;
}

std::chrono::milliseconds heartbeat_interval(double timeout_seconds) {
  return to_ms(std::clamp(timeout_seconds / 10.0, 0.2, 2.0));
}

std::shared_ptr<ProcessGroup> init_process_group(const LaunchEnv& e, const DistOptions& o) {
  SETDET_CHECK(e.world_size > 1, "init_process_group: a world of ", e.world_size,
               " process needs no group");
  const auto timeout = to_ms(o.timeout_seconds);
  const std::string where = fmt::format("{}:{}", e.master_addr, e.master_port);
  auto connect = [&](bool server, std::chrono::milliseconds t) {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(e.master_port);
    so.isServer = server;
    so.waitWorkers = false;
    so.timeout = t;
    try {
      return c10::make_intrusive<c10d::TCPStore>(e.master_addr, so);
    } catch (const std::exception& ex) {
      throw CommunicationError(fmt::format(
          "rank {}: rendezvous: {} the store at {} (MASTER_ADDR:MASTER_PORT) within {} s: {}",
          e.rank, server ? "cannot host" : "cannot reach", where, o.timeout_seconds,
          std::string(ex.what()).substr(0, std::string(ex.what()).find('\n'))));
    }
  };
  const bool host = e.rank == 0 && !e.agent_store;
  auto tcp = connect(host, timeout);
  // The monitor's own connection: heartbeats never wait behind a blocked store call.
  auto monitor_tcp = connect(false, std::min(timeout, to_ms(10.0)));
  const std::string prefix = fmt::format("setdet/attempt_{}", e.restart_count);
  auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
  auto monitor_store = c10::make_intrusive<c10d::PrefixStore>(prefix, monitor_tcp);
  try {
    auto group = create_gloo_process_group(store, monitor_store, e.rank, e.world_size, timeout,
                                           heartbeat_interval(o.timeout_seconds),
                                           is_loopback(e.master_addr));
    group->impl().hosts_store = host;
    return group;
  } catch (const std::exception& ex) {
    throw CommunicationError(
        fmt::format("rank {}: rendezvous at {}: not all {} ranks joined within {} s: {}", e.rank,
                    where, e.world_size, o.timeout_seconds,
                    std::string(ex.what()).substr(0, std::string(ex.what()).find('\n'))));
  }
}

}  // namespace setdet::dist
