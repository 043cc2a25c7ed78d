// The signal handling of backupfs-capture and backupfs-restore.
#pragma once

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <thread>

namespace backupfs {

// SIGINT, SIGTERM and SIGHUP are blocked in every thread and taken by one watcher thread,
// which sets the cancel flag: the run then stops at its next read or write, cleans up (the
// .partial files, capture's libvirt job and checkpoint) and exits 1. A second signal while
// the cleanup runs is taken as impatience and ignored (the cleanup is short).
//
// BlockWakeup() must run first in main(), before any thread starts, so that every thread
// inherits the blocked SIGUSR1 by which the destructor wakes the watcher.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, s);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    sigaddset(&set_, SIGUSR1);  // blocked since main's start, see BlockWakeup
    thread_ = std::thread([this] {
      int sig = 0;
      while (sigwait(&set_, &sig) == 0) {
        if (sig == SIGUSR1 && done_) return;  // our own wake-up at exit
        if (sig == SIGUSR1) continue;
        signal_ = sig;
        cancel_ = true;
      }
    });
  }
  ~SignalWatcher() {
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }
  std::atomic<bool>* flag() { return &cancel_; }
  int signal() const { return signal_; }
  // Also ignores SIGPIPE: a write to a connection the peer has closed (an NBD server or ssh
  // gone, a TLS close after the server hung up) must fail with EPIPE and be reported with
  // the rest, not kill the run before it cleans up.
  static void BlockWakeup() {
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, nullptr);
  }

 private:
  sigset_t set_;
  std::thread thread_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> done_{false};
  std::atomic<int> signal_{0};
};

}  // namespace backupfs
