// A small fork-join helper for setdet_core (no LibTorch). The thread count defaults to all
// cores and is set once by the CLI's --threads (set_num_threads).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace setdet {

int num_threads();
void set_num_threads(int n);  // n <= 0 restores the default (all available cores)

// The CPUs this process may run on (its affinity mask; hardware concurrency where that is
// unknown), at least 1.
int available_cores();

// min(requested, limit); when that lowers the request, says so on stderr naming `what`
// ("--threads", "data.train.num_workers"), so a mistyped count cannot start thousands of threads.
int64_t cap_thread_count(int64_t requested, int64_t limit, const std::string& what);

// Calls fn(chunk_begin, chunk_end) over [begin, end) split into contiguous chunks of at least
// `grain` items, on up to num_threads() threads. The calling thread does one chunk. The first
// exception thrown by fn is rethrown after all chunks finish.
template <typename Fn>
void parallel_for(int64_t begin, int64_t end, int64_t grain, Fn&& fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int64_t chunks = std::min<int64_t>(max_chunks, num_threads());
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  const int64_t step = (n + chunks - 1) / chunks;
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int64_t b, int64_t e) {
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(chunks - 1));
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t b = begin + c * step;
    const int64_t e = std::min(end, b + step);
    if (b >= e) continue;
    try {
      workers.emplace_back(run, b, e);
    } catch (const std::system_error&) {
      run(b, e);  // no thread to be had (resource limits): this chunk runs here
    }
  }
  run(begin, std::min(end, begin + step));
  for (auto& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace setdet
