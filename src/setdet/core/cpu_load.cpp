#include "setdet/core/cpu_load.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

#include "setdet/core/error.h"

namespace setdet {

double busy_ticks_from_proc_stat_line(const char* line) {
  std::istringstream in(line);
  std::string label;
  in >> label;
  SETDET_CHECK(label.rfind("cpu", 0) == 0, "/proc/stat: expected a 'cpu' line, got '", line, "'");
  double f[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // user nice system idle iowait irq softirq steal
  int read = 0;
  while (read < 8 && in >> f[read]) ++read;
  SETDET_CHECK(read >= 4, "/proc/stat: expected at least 4 numbers on '", line, "'");
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
}

bool cpu_load_supported() {
  FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return false;
  std::fclose(f);
  return true;
}

CpuSample sample_cpu() {
  CpuSample s;
  s.wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (FILE* f = std::fopen("/proc/stat", "r")) {
    char line[512];
    if (std::fgets(line, sizeof(line), f) != nullptr) {
      static const double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.machine_busy = busy_ticks_from_proc_stat_line(line) / ticks_per_second;
    }
    std::fclose(f);
  }
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    s.own = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
            1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
  }
  return s;
}

double cores_used_by_others(const CpuSample& before, const CpuSample& after, int cores) {
  const double wall = after.wall - before.wall;
  if (wall <= 0.0) return 0.0;
  const double others =
      ((after.machine_busy - before.machine_busy) - (after.own - before.own)) / wall;
  return std::clamp(others, 0.0, static_cast<double>(cores));
}

}  // namespace setdet

namespace setdet {

int governed_thread_count(int max_threads, int cores, double others) {
  const double free = static_cast<double>(cores) - others;
  const int n = static_cast<int>(std::lround(free));
  return std::clamp(n, 1, std::max(1, max_threads));
}

}  // namespace setdet
