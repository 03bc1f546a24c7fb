#include "setdet/core/parallel.h"

#include <sched.h>

#include <atomic>
#include <iostream>

namespace setdet {
namespace {
std::atomic<int> g_num_threads{0};
}

int num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  return available_cores();
}

int available_cores() {
  static const int cores = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
      return CPU_COUNT(&set);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }();
  return cores;
}

int64_t cap_thread_count(int64_t requested, int64_t limit, const std::string& what) {
  if (requested <= limit) return requested;
  std::cerr << "setdet: " << what << " " << requested << " is more than the " << limit
            << " allowed here (" << available_cores() << " cores); using " << limit << "\n";
  return limit;
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

}  // namespace setdet
