#include "setdet/distributed/process_group.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gloo/common/error.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>

#include "setdet/distributed/process_group_impl.h"

namespace setdet::dist {
namespace {

std::mutex g_mutex;
std::shared_ptr<ProcessGroup> g_group;
thread_local ProcessGroup* t_group = nullptr;
thread_local bool t_group_set = false;

constexpr size_t kBroadcastBucketBytes = 64u << 20;

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  TORCH_INTERNAL_ASSERT(impl_ && impl_->main && impl_->gradients, "ProcessGroup: incomplete");
}

ProcessGroup::~ProcessGroup() {
  if (impl_->monitor) impl_->monitor->stop();
}

int ProcessGroup::rank() const { return impl_->rank; }
int ProcessGroup::world_size() const { return impl_->world_size; }

namespace {

// Runs one collective on `impl.main` and waits for it; a failure becomes a CommunicationError
// naming the collective (the report of who is at fault comes from describe_failure()).
template <typename Launch>
void run_collective(ProcessGroup::Impl& impl, const char* name, Launch&& launch) {
  const int64_t number = ++impl.collectives;
  try {
    auto work = launch(*impl.main);
    work->wait();
  } catch (const std::exception& e) {
    throw CommunicationError(
        fmt::format("{} (collective #{}) failed: {}", name, number, first_line(e.what())));
  }
}

}  // namespace

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  run_collective(*impl_, "all_reduce", [&](c10d::ProcessGroup& pg) {
    return pg.allreduce(tensors, c10d::AllreduceOptions{});
  });
}

std::vector<double> ProcessGroup::all_reduce_sum(const std::vector<double>& values) {
  if (values.empty()) return {};
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::kDouble);
  std::memcpy(t.data_ptr<double>(), values.data(), values.size() * sizeof(double));
  all_reduce_sum(t);
  const double* p = t.data_ptr<double>();
  return std::vector<double>(p, p + values.size());
}

void ProcessGroup::broadcast(std::vector<at::Tensor>& tensors, int root) {
  if (tensors.empty()) return;
  const int64_t number = ++impl_->collectives;
  try {
    c10d::broadcast_coalesced(impl_->main, tensors, kBroadcastBucketBytes, root);
  } catch (const std::exception& e) {
    throw CommunicationError(
        fmt::format("broadcast (collective #{}) failed: {}", number, first_line(e.what())));
  }
}

std::vector<std::string> ProcessGroup::gather_bytes(const std::string& bytes, int root) {
  const int w = world_size();
  // sizes first, then every rank's bytes padded to the longest
  std::vector<double> sizes(static_cast<size_t>(w), 0.0);
  sizes[static_cast<size_t>(rank())] = static_cast<double>(bytes.size());
  sizes = all_reduce_sum(sizes);
  const auto longest = static_cast<int64_t>(*std::max_element(sizes.begin(), sizes.end()));
  at::Tensor mine = at::zeros({std::max<int64_t>(longest, 1)}, at::kByte);
  std::memcpy(mine.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < w; ++r) outputs[0].push_back(at::empty_like(mine));
  std::vector<at::Tensor> inputs{mine};
  run_collective(*impl_, "all_gather", [&](c10d::ProcessGroup& pg) {
    return pg.allgather(outputs, inputs, c10d::AllgatherOptions{});
  });
  std::vector<std::string> out;
  if (rank() != root) return out;
  for (int r = 0; r < w; ++r) {
    const auto* p = reinterpret_cast<const char*>(outputs[0][static_cast<size_t>(r)].data_ptr());
    out.emplace_back(p, static_cast<size_t>(sizes[static_cast<size_t>(r)]));
  }
  return out;
}

std::string ProcessGroup::broadcast_bytes(const std::string& bytes, int root) {
  at::Tensor size =
      at::scalar_tensor(static_cast<int64_t>(rank() == root ? bytes.size() : 0), at::kLong)
          .reshape({1});
  std::vector<at::Tensor> size_v{size};
  broadcast(size_v, root);
  const int64_t n = size.item<int64_t>();
  at::Tensor data = at::zeros({std::max<int64_t>(n, 1)}, at::kByte);
  if (rank() == root) std::memcpy(data.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  std::vector<at::Tensor> data_v{data};
  broadcast(data_v, root);
  return std::string(reinterpret_cast<const char*>(data.data_ptr<uint8_t>()),
                     static_cast<size_t>(n));
}

void ProcessGroup::barrier() {
  run_collective(*impl_, "barrier",
                 [&](c10d::ProcessGroup& pg) { return pg.barrier(c10d::BarrierOptions{}); });
}

std::string ProcessGroup::describe_failure(const std::string& error) {
  const std::string findings =
      impl_->monitor ? impl_->monitor->describe() : "no heartbeat monitor to ask";
  return fmt::format("{}; on this rank: {}", findings, first_line(error));
}

void ProcessGroup::report_failure(const std::string& message) {
  if (impl_->monitor) impl_->monitor->report_failure(message);
}

ProcessGroup* current_process_group() {
  if (t_group_set) return t_group;
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_group.get();
}

void set_process_group(std::shared_ptr<ProcessGroup> group) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_group = std::move(group);
}

std::shared_ptr<ProcessGroup> process_group_ptr() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_group;
}

ScopedProcessGroup::ScopedProcessGroup(ProcessGroup* group)
    : previous_(t_group), previous_set_(t_group_set) {
  t_group = group;
  t_group_set = true;
}

ScopedProcessGroup::~ScopedProcessGroup() {
  t_group = previous_;
  t_group_set = previous_set_;
}

double reduce_normaliser(double local) { return reduce_normalisers({local}).front(); }

std::vector<double> reduce_normalisers(const std::vector<double>& local) {
  ProcessGroup* group = current_process_group();
  if (group == nullptr || group->world_size() == 1) return local;
  std::vector<double> sum = group->all_reduce_sum(local);
  for (double& v : sum) v /= static_cast<double>(group->world_size());
  return sum;
}

bool is_communication_failure(const std::exception& e) {
  if (dynamic_cast<const CommunicationError*>(&e) || dynamic_cast<const gloo::Exception*>(&e)) {
    return true;
  }
  // Gloo's errors reach here wrapped (c10::Error from a Work, or through autograd) and keep the
  // source path of the Gloo file that raised them.
  return std::string(e.what()).find("gloo/") != std::string::npos;
}

void exit_after_failure(ProcessGroup& group, const std::exception& e, int code) {
  std::string message;
  if (is_communication_failure(e)) {
    message = group.describe_failure(e.what());
  } else {
    message = e.what();
    group.report_failure(first_line(message));
  }
  std::cerr << "setdet: error: rank " << group.rank() << ": " << message << std::endl;
  if (group.impl().hosts_store) std::this_thread::sleep_for(group.impl().heartbeat * 4);
  std::_Exit(code);
}

std::shared_ptr<ProcessGroup> create_gloo_process_group(
    const c10::intrusive_ptr<c10d::Store>& store,
    const c10::intrusive_ptr<c10d::Store>& monitor_store, int rank, int world_size,
    std::chrono::milliseconds timeout, std::chrono::milliseconds heartbeat, bool loopback) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  if (loopback) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else if (const char* ifnames = std::getenv("GLOO_SOCKET_IFNAME"); ifnames && *ifnames) {
    std::string list = ifnames;
    size_t start = 0;
    while (start <= list.size()) {
      const size_t end = std::min(list.find(',', start), list.size());
      if (end > start) {
        options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForInterface(list.substr(start, end - start)));
      }
      start = end + 1;
    }
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  auto impl = std::make_unique<ProcessGroup::Impl>();
  impl->rank = rank;
  impl->world_size = world_size;
  impl->timeout = timeout;
  impl->heartbeat = heartbeat;
  impl->store = store;
  // The main group is used synchronously from one thread; the gradient buckets may overlap.
  options->threads = 1;
  impl->main = c10::make_intrusive<c10d::ProcessGroupGloo>(
      c10::make_intrusive<c10d::PrefixStore>("main", store), rank, world_size, options);
  auto grad_options = c10d::ProcessGroupGloo::Options::create(timeout);
  grad_options->devices = options->devices;
  grad_options->threads = 2;
  impl->gradients = c10::make_intrusive<c10d::ProcessGroupGloo>(
      c10::make_intrusive<c10d::PrefixStore>("gradients", store), rank, world_size, grad_options);
  auto* counter = &impl->collectives;
  impl->monitor = std::make_unique<RankMonitor>(monitor_store, rank, world_size, heartbeat,
                                                [counter] { return counter->load(); });
  return std::make_shared<ProcessGroup>(std::move(impl));
}

}  // namespace setdet::dist
