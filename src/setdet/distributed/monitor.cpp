#include "setdet/distributed/monitor.h"

#include <fmt/format.h>

#include <sstream>
#include <vector>

namespace setdet::dist {
namespace {

std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string to_string(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

std::string heartbeat_key(int r) { return "hb/" + std::to_string(r); }
std::string failure_key(int r) { return "failed/" + std::to_string(r); }

}  // namespace

RankMonitor::RankMonitor(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
                         std::chrono::milliseconds interval, std::function<int64_t()> progress)
    : store_(std::move(store)),
      rank_(rank),
      world_size_(world_size),
      interval_(interval),
      progress_(std::move(progress)) {
  thread_ = std::thread([this] { beat_loop(); });
}

RankMonitor::~RankMonitor() { stop(); }

void RankMonitor::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RankMonitor::beat_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    const std::string value = fmt::format("{} {}", beat_++, progress_());
    lock.unlock();
    try {
      store_->set(heartbeat_key(rank_), to_bytes(value));
    } catch (const std::exception&) {
      return;  // the store is gone (its host exited): nothing left to tell
    }
    lock.lock();
    cv_.wait_for(lock, interval_, [this] { return stop_; });
  }
}

void RankMonitor::report_failure(const std::string& message) {
  try {
    store_->set(failure_key(rank_), to_bytes(message));
  } catch (const std::exception&) {
    // the store is unreachable: the report goes to stderr only
  }
}

RankMonitor::Record RankMonitor::read(int r) {
  Record rec;
  try {
    if (store_->check({failure_key(r)})) rec.failed = to_string(store_->get(failure_key(r)));
    if (store_->check({heartbeat_key(r)})) {
      std::istringstream is(to_string(store_->get(heartbeat_key(r))));
      is >> rec.beat >> rec.progress;
      rec.beating = true;
    }
  } catch (const std::exception&) {
    rec.reachable = false;
  }
  return rec;
}

std::string RankMonitor::describe() {
  std::vector<Record> first(static_cast<size_t>(world_size_));
  for (int r = 0; r < world_size_; ++r) {
    if (r != rank_) first[static_cast<size_t>(r)] = read(r);
  }
  // Wait 3 heartbeat intervals, and up to 12 while a beating rank has not beaten again: on a
  // loaded machine a live rank's heartbeat thread can be late, and must not be reported dead.
  std::vector<Record> last(static_cast<size_t>(world_size_));
  std::chrono::milliseconds waited_for{0};
  for (int round = 0; round < 4; ++round) {
    std::this_thread::sleep_for(interval_ * 3);
    waited_for += interval_ * 3;
    bool silent = false;
    for (int r = 0; r < world_size_; ++r) {
      if (r == rank_) continue;
      const Record& before = first[static_cast<size_t>(r)];
      Record& now = last[static_cast<size_t>(r)];
      now = read(r);
      silent = silent || (before.reachable && now.reachable && now.failed.empty() &&
                          now.beating && now.beat == before.beat);
    }
    if (!silent) break;
  }
  const int64_t mine = progress_();
  const double waited = std::chrono::duration<double>(waited_for).count();
  std::vector<std::string> findings;
  bool unreachable = false;
  for (int r = 0; r < world_size_; ++r) {
    if (r == rank_) continue;
    const Record before = first[static_cast<size_t>(r)];
    const Record now = last[static_cast<size_t>(r)];
    if (!before.reachable || !now.reachable) {
      unreachable = true;
      continue;
    }
    if (!now.failed.empty()) {
      findings.push_back(fmt::format("rank {} failed: {}", r, now.failed));
    } else if (!now.beating) {
      findings.push_back(fmt::format("rank {} never started its heartbeat", r));
    } else if (now.beat == before.beat) {
      findings.push_back(fmt::format(
          "rank {} stopped responding (no heartbeat for {:.1f} s: the process died or was "
          "stopped)",
          r, waited));
    } else if (now.progress < mine) {
      findings.push_back(
          fmt::format("rank {} is alive but stuck before collective #{} (it entered {}, this "
                      "rank {})",
                      r, now.progress + 1, now.progress, mine));
    }
  }
  if (unreachable) {
    findings.push_back(
        "the rendezvous store does not answer: the process hosting it (the launcher, or rank 0 "
        "when no launcher hosts it) has exited");
  }
  if (findings.empty()) return "no other rank reported a failure";
  std::string out;
  for (size_t i = 0; i < findings.size(); ++i) out += (i ? "; " : "") + findings[i];
  return out;
}

}  // namespace setdet::dist
