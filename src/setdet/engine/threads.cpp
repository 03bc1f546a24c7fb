#include "setdet/engine/threads.h"

#include <ATen/Parallel.h>

#include "setdet/core/parallel.h"

namespace setdet {

int init_threads(int n) {
  set_num_threads(n);
  const int threads = num_threads();
  at::set_num_threads(threads);
  return threads;
}

}  // namespace setdet
