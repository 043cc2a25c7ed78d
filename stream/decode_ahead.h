// One background thread that runs work for requested numbers (chunk numbers of a reader), one
// at a time and in request order: StreamReader decodes the next lz4 frame on it while FUSE
// threads serve the current one.
//
// Bounded: at most kMaxPending requests wait (a new one pushes out the oldest, which its
// reader then decodes itself when it gets there). The thread starts with the first request, so
// a reader never read sequentially costs no thread.
//
// Lifetime: the destructor drops the waiting requests, waits for the running one to finish and
// joins the thread: no work runs after it returns. The owner must destroy this before anything
// the work touches. Request may be called from any thread, but not concurrently with the
// destructor.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <semaphore>
#include <thread>

#include "common/thread_annotations.h"

namespace backupfs {

class DecodeAhead {
 public:
  static constexpr size_t kMaxPending = 2;

  // `work` runs on the background thread; it must not throw (an exception is dropped).
  explicit DecodeAhead(std::function<void(size_t)> work) : work_(std::move(work)) {}
  ~DecodeAhead() EXCLUDES(mu_);
  DecodeAhead(const DecodeAhead&) = delete;
  DecodeAhead& operator=(const DecodeAhead&) = delete;

  // Queues work(n). Cheap: never waits for work.
  void Request(size_t n) EXCLUDES(mu_);

 private:
  void Run() EXCLUDES(mu_);

  const std::function<void(size_t)> work_;
  Mutex mu_;
  std::deque<size_t> pending_ GUARDED_BY(mu_);  // oldest first
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_ GUARDED_BY(mu_);  // started by the first Request
  // Released once per request queued and once to stop; the thread sleeps on it.
  std::counting_semaphore<> wake_{0};
};

}  // namespace backupfs
