// One thread setting for the whole process: setdet_core's pool and LibTorch's intra-op pool.
// LibTorch runs one thread unless told; setdet defaults to all cores.
#pragma once

namespace setdet {

// n <= 0: all cores. Returns the thread count now in force.
int init_threads(int n);

}  // namespace setdet
