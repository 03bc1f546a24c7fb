// glibc's malloc returns freed memory to the system eagerly: allocations above its mmap threshold
// (128 KiB, rising to at most 32 MiB) are fresh mmaps, and free space at the top of the heap
// beyond its trim threshold is given back. A detector's large activations are then faulted in
// page by page on every forward pass. Measured 2026-12-05, FCOS R50-FPN network on 800x1216, 2
// threads: 1.73-1.82 s as glibc sets it, 0.85 s with both thresholds raised (bench/bench_infer.py).
#pragma once

#include <string>

namespace setdet {

// Raises glibc's mmap threshold to 1 GiB and its trim threshold to 2 GiB (mallopt), so freed
// memory stays with the process and is reused; peak memory is unchanged, the process just keeps
// it. Process-wide: setdet::Detector never calls it, the setdet CLI does at start. Does nothing
// when the environment already sets MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ (the user's
// choice, which glibc has applied) or without glibc. Returns what it did, for logs.
std::string keep_freed_memory_for_reuse();

}  // namespace setdet
