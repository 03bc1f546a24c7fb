#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "setdet/core/cpu_load.h"
#include "setdet/core/error.h"

namespace setdet {
namespace {

TEST(CpuLoad, ProcStatLineBusyTicks) {
  // user nice system idle iowait irq softirq steal guest guest_nice
  EXPECT_DOUBLE_EQ(busy_ticks_from_proc_stat_line("cpu  100 2 30 4000 50 6 7 8 9 10\n"),
                   100 + 2 + 30 + 6 + 7 + 8);
  EXPECT_DOUBLE_EQ(busy_ticks_from_proc_stat_line("cpu 1 2 3 4"), 6);
  EXPECT_THROW(busy_ticks_from_proc_stat_line("intr 1 2 3"), Error);
  EXPECT_THROW(busy_ticks_from_proc_stat_line("cpu 1 2"), Error);
}

TEST(CpuLoad, OthersAreTheMachinesBusyTimeMinusOurs) {
  const CpuSample a{100.0, 10.0, 1000.0};
  const CpuSample b{103.0, 11.5, 1002.0};  // 3 busy seconds in 2 s, 1.5 of them ours
  EXPECT_DOUBLE_EQ(cores_used_by_others(a, b, 2), 0.75);
  EXPECT_DOUBLE_EQ(cores_used_by_others(a, CpuSample{120.0, 10.0, 1002.0}, 2), 2.0);  // clamped
  EXPECT_DOUBLE_EQ(cores_used_by_others(a, CpuSample{100.0, 12.0, 1002.0}, 2), 0.0);
  EXPECT_DOUBLE_EQ(cores_used_by_others(a, a, 2), 0.0);  // no time passed
}

TEST(CpuLoad, GovernedThreadsAreTheFreeCores) {
  EXPECT_EQ(governed_thread_count(2, 2, 0.0), 2);
  EXPECT_EQ(governed_thread_count(2, 2, 0.3), 2);  // light background load keeps both
  EXPECT_EQ(governed_thread_count(2, 2, 0.7), 1);  // a neighbour sharing a core with us
  EXPECT_EQ(governed_thread_count(2, 2, 1.0), 1);
  EXPECT_EQ(governed_thread_count(2, 2, 2.0), 1);  // never below one
  EXPECT_EQ(governed_thread_count(4, 8, 0.0), 4);  // never above the starting count
  EXPECT_EQ(governed_thread_count(8, 8, 3.2), 5);
  EXPECT_EQ(governed_thread_count(0, 2, 0.0), 1);
}

TEST(CpuLoad, SeesABusyNeighbourProcess) {
  ASSERT_TRUE(cpu_load_supported());
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    volatile unsigned long spin = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < end) ++spin;
    _exit(0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const CpuSample before = sample_cpu();
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const CpuSample after = sample_cpu();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  // the spinning child keeps about one core busy; this process sleeps
  EXPECT_GT(cores_used_by_others(before, after, 64), 0.5);
  EXPECT_LT(after.own - before.own, 0.2);
}

}  // namespace
}  // namespace setdet
