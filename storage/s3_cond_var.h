// A condition variable for backupfs::Mutex whose waits the thread-safety analysis sees as
// holding the mutex throughout (it is released only while blocked).
#pragma once

#include <chrono>
#include <condition_variable>

#include "common/thread_annotations.h"

namespace backupfs {

#if defined(__clang__)
#define BFS_S3_NO_THREAD_SAFETY_ANALYSIS __attribute__((no_thread_safety_analysis))
#else
#define BFS_S3_NO_THREAD_SAFETY_ANALYSIS
#endif

class S3CondVar {
 public:
  void Wait(Mutex& mu) REQUIRES(mu) {
    Unlocker u{mu};
    cv_.wait(u);
  }
  // Returns when notified (or spuriously) or at `deadline`.
  void WaitUntil(Mutex& mu, std::chrono::steady_clock::time_point deadline) REQUIRES(mu) {
    Unlocker u{mu};
    cv_.wait_until(u, deadline);
  }
  void NotifyAll() { cv_.notify_all(); }

 private:
  struct Unlocker {
    Mutex& mu;
    void lock() BFS_S3_NO_THREAD_SAFETY_ANALYSIS { mu.Lock(); }
    void unlock() BFS_S3_NO_THREAD_SAFETY_ANALYSIS { mu.Unlock(); }
  };
  std::condition_variable_any cv_;
};

}  // namespace backupfs
