// Progress of the disks of a run: a bar on a terminal, plain log lines otherwise.
//
// Disks may be read in parallel, so one board tracks them all: readers only add to atomic
// counters; on a terminal a thread of the board redraws one status line (per disk: percent,
// rate, ETA) every 200 ms; elsewhere (cron, systemd) it logs one line per disk every 30 s,
// so a log shows that a long backup moves without a line per chunk.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/run_log.h"

namespace backupfs {

// "12.3 MiB": how progress, logs and summaries show sizes.
std::string FormatMib(uint64_t bytes);

class ProgressBoard {
 public:
  class Disk {
   public:
    void Add(uint64_t bytes) { done_.fetch_add(bytes, std::memory_order_relaxed); }

   private:
    friend class ProgressBoard;
    Disk(std::string name, uint64_t total) : name_(std::move(name)), total_(total) {}
    const std::string name_;
    const uint64_t total_;
    std::atomic<uint64_t> done_{0};
    std::atomic<bool> finished_{false};
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  };

  // `bar`: draw on stderr (caller checked that it is a terminal and progress is wanted).
  ProgressBoard(RunLog& log, bool bar);
  ~ProgressBoard();
  ProgressBoard(const ProgressBoard&) = delete;
  ProgressBoard& operator=(const ProgressBoard&) = delete;

  // A disk that will read `total` bytes; valid as long as the board.
  Disk& Start(const std::string& name, uint64_t total);
  // Logs the disk's total and rate.
  void Finish(Disk& disk);

 private:
  void Loop();
  std::string Line(const Disk& d, std::chrono::steady_clock::time_point now) const;
  void Draw(bool final_draw);

  RunLog& log_;
  const bool bar_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Disk>> disks_;  // protected by mu_
  bool stop_ = false;                         // protected by mu_
  size_t drawn_width_ = 0;                    // width of the last bar drawn
  std::thread thread_;
};

}  // namespace backupfs
