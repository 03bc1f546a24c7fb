#include "setdet/core/parallel.h"

#include <atomic>

namespace setdet {
namespace {
std::atomic<int> g_num_threads{0};
}

int num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

}  // namespace setdet
