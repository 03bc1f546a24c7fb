// How many cores other processes keep busy: the machine's busy CPU time (/proc/stat) minus this
// process's own (getrusage), over wall time. Linux only; elsewhere cpu_load_supported() is false.
#pragma once

namespace setdet {

struct CpuSample {
  double machine_busy = 0.0;  // seconds of CPU time spent busy on every core since boot
  double own = 0.0;           // this process's user + system seconds (all its threads)
  double wall = 0.0;          // steady-clock seconds
};

bool cpu_load_supported();
CpuSample sample_cpu();

// Mean number of cores busy with other processes between two samples, clamped to [0, cores].
double cores_used_by_others(const CpuSample& before, const CpuSample& after, int cores);

// The busy-seconds field sum of a /proc/stat "cpu" line (user nice system idle iowait irq softirq
// steal ...): user + nice + system + irq + softirq + steal, in ticks. Throws on a malformed line.
double busy_ticks_from_proc_stat_line(const char* line);

}  // namespace setdet

namespace setdet {

// The threads to run with when other processes keep `others` of `cores` busy: the free cores,
// rounded, within [1, max_threads]. Two threads on two cores, one of them shared with a busy
// neighbour, wait for the shared core at every parallel region's barrier (a scheduler time slice
// each time); one thread on the free core does not.
int governed_thread_count(int max_threads, int cores, double others);

}  // namespace setdet
