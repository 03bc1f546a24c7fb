// Liveness of the ranks, for error reports that name the rank at fault. Each rank's monitor
// thread writes "hb/<rank>" = "<beat> <collectives entered>" to the rendezvous store every
// `interval`; a rank that fails on its own (not through a collective) writes "failed/<rank>". After
// a failed collective, describe() reads them twice, 3 intervals apart: a rank that wrote "failed/"
// failed; one whose beat did not move died or was stopped; one that beats but has entered fewer
// collectives is alive but behind (stuck before the collective this rank waits in).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace setdet::dist {

class RankMonitor {
 public:
  // progress(): how many collectives this rank has entered.
  RankMonitor(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
              std::chrono::milliseconds interval, std::function<int64_t()> progress);
  ~RankMonitor();
  RankMonitor(const RankMonitor&) = delete;
  RankMonitor& operator=(const RankMonitor&) = delete;

  void report_failure(const std::string& message);
  // What the other ranks' records say about them (one sentence per rank at fault), or why the
  // store could not tell.
  std::string describe();
  void stop();

 private:
  struct Record {
    bool reachable = true;  // the store answered
    bool beating = false;   // hb/<r> exists
    int64_t beat = -1;
    int64_t progress = -1;
    std::string failed;  // failed/<r>, "" if none
  };
  Record read(int r);
  void beat_loop();

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_;
  int world_size_;
  std::chrono::milliseconds interval_;
  std::function<int64_t()> progress_;

  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  int64_t beat_ = 0;
  std::thread thread_;
};

}  // namespace setdet::dist
