#include "setdet/core/malloc_tuning.h"

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace setdet {

std::string keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr ||
      std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) {
    return "glibc malloc thresholds from the environment";
  }
  constexpr int kMmapThreshold = 1 << 30;
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1;
  // M_TRIM_THRESHOLD takes an int: the largest one (2 GiB - 1)
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, 0x7fffffff) == 1;
  if (mmap_ok && trim_ok) return "glibc malloc keeps freed memory for reuse";
  return "glibc malloc: mallopt refused the thresholds";
#else
  return "not glibc: malloc unchanged";
#endif
}

}  // namespace setdet
