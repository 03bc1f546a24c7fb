#include "setdet/distributed/launcher.h"

#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <thread>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "setdet/core/error.h"

extern char** environ;

namespace setdet::dist {
namespace {

std::atomic<int> g_signals{0};
std::atomic<int> g_last_signal{0};

extern "C" void on_launcher_signal(int sig) {
  g_last_signal = sig;
  g_signals.fetch_add(1);
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
  return fmt::format("exited with code {}", WEXITSTATUS(status));
}

int exit_code(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<std::string> own_arguments_without(const std::string& name) {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  SETDET_CHECK(in, "cannot read /proc/self/cmdline");
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  size_t start = 0;
  while (start < all.size()) {
    const size_t end = all.find('\0', start);
    argv.push_back(all.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  std::vector<std::string> out;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (argv[i] == name) {
      ++i;  // and its value
      continue;
    }
    if (argv[i].rfind(name + "=", 0) == 0) continue;
    out.push_back(argv[i]);
  }
  return out;
}

int launch_local_workers(const LocalLaunch& launch) {
  SETDET_CHECK(launch.nproc >= 1, "--nproc: expected >= 1, got ", launch.nproc);
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(launch.master_port);
  so.isServer = true;
  so.waitWorkers = false;
  c10d::TCPStore store("127.0.0.1", so);
  const int port = store.getPort();
  std::string exe(4096, '\0');
  const ssize_t exe_len = readlink("/proc/self/exe", exe.data(), exe.size());
  SETDET_CHECK(exe_len > 0, "--nproc: cannot resolve /proc/self/exe: ", strerror(errno));
  exe.resize(static_cast<size_t>(exe_len));

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (key == "RANK" || key == "LOCAL_RANK" || key == "WORLD_SIZE" || key == "LOCAL_WORLD_SIZE" ||
        key == "MASTER_ADDR" || key == "MASTER_PORT" || key == "GROUP_RANK" ||
        key.rfind("TORCHELASTIC_", 0) == 0) {
      continue;
    }
    env_strings.push_back(kv);
  }

  struct sigaction sa {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  std::map<pid_t, int> rank_of;
  pid_t group = 0;
  for (int r = 0; r < launch.nproc; ++r) {
    std::vector<std::string> env = env_strings;
    env.push_back(fmt::format("RANK={}", r));
    env.push_back(fmt::format("LOCAL_RANK={}", r));
    env.push_back(fmt::format("GROUP_RANK=0"));
    env.push_back(fmt::format("WORLD_SIZE={}", launch.nproc));
    env.push_back(fmt::format("LOCAL_WORLD_SIZE={}", launch.nproc));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back(fmt::format("MASTER_PORT={}", port));
    env.push_back("TORCHELASTIC_USE_AGENT_STORE=True");
    env.push_back("TORCHELASTIC_RESTART_COUNT=0");
    std::vector<char*> envp;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args{exe};
    args.insert(args.end(), launch.args.begin(), launch.args.end());
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);

    // The workers form their own process group: a terminal's Ctrl-C reaches the launcher only,
    // which forwards it once.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, group);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    pid_t pid = 0;
    const int err = posix_spawn(&pid, exe.c_str(), nullptr, &attr, argv.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    if (err != 0) {
      if (group != 0) kill(-group, SIGKILL);
      throw Error(fmt::format("--nproc: cannot start worker {}: {}", r, strerror(err)));
    }
    if (group == 0) group = pid;
    rank_of[pid] = r;
  }

  int first_failure = 0;
  double failed_at = -1.0;
  bool terminated = false;
  int forwarded = 0;
  while (!rank_of.empty()) {
    const int signals = g_signals.load();
    if (signals > forwarded) {
      kill(-group, signals == 1 ? g_last_signal.load() : SIGKILL);
      forwarded = signals;
    }
    if (failed_at >= 0 && !terminated && now_seconds() - failed_at > launch.grace_seconds) {
      std::cerr << fmt::format(
          "setdet train: terminating the remaining workers {} s after the first failure\n",
          launch.grace_seconds);
      kill(-group, SIGTERM);
      terminated = true;
    } else if (terminated && now_seconds() - failed_at > launch.grace_seconds + 10.0) {
      kill(-group, SIGKILL);
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    auto it = rank_of.find(pid);
    if (it == rank_of.end()) continue;
    const int rank = it->second;
    rank_of.erase(it);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    std::cerr << fmt::format("setdet train: rank {} (pid {}) {}\n", rank, pid,
                             describe_status(status));
    if (first_failure == 0) {
      first_failure = exit_code(status);
      failed_at = now_seconds();
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return first_failure;
}

}  // namespace setdet::dist
