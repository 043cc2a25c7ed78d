// Clang thread-safety annotations (-Wthread-safety), as in leveldb's port/thread_annotations.h.
// Other compilers see nothing. Annotated state is checked only where its mutex is a Mutex
// (below): std::mutex carries no capability attributes in libstdc++.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define BFS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define BFS_THREAD_ANNOTATION(x)
#endif

#define GUARDED_BY(x) BFS_THREAD_ANNOTATION(guarded_by(x))
#define EXCLUDES(...) BFS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define REQUIRES(...) BFS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) BFS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define CAPABILITY(x) BFS_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY BFS_THREAD_ANNOTATION(scoped_lockable)
#define ACQUIRE(...) BFS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) BFS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define BFS_NO_THREAD_SAFETY_ANALYSIS BFS_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace backupfs {

// std::mutex with the capability attribute, so that GUARDED_BY(mu_) is checked.
class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() RELEASE() { mu_.Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// A condition variable for Mutex, whose waits the analysis sees as holding it.
class CondVar {
 public:
  // `mu` is held on entry and on return, released while blocked.
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
    void lock() BFS_NO_THREAD_SAFETY_ANALYSIS { mu.Lock(); }
    void unlock() BFS_NO_THREAD_SAFETY_ANALYSIS { mu.Unlock(); }
  };
  std::condition_variable_any cv_;
};

}  // namespace backupfs
