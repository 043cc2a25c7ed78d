#include "stream/decode_ahead.h"

#include <utility>

namespace backupfs {

DecodeAhead::~DecodeAhead() {
  std::thread thread;
  {
    MutexLock lock(mu_);
    stop_ = true;
    pending_.clear();
    thread = std::move(thread_);
  }
  wake_.release();
  if (thread.joinable()) thread.join();
}

void DecodeAhead::Request(size_t n) {
  MutexLock lock(mu_);
  if (stop_) return;
  if (pending_.size() == kMaxPending) pending_.pop_front();
  pending_.push_back(n);
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  wake_.release();
}

void DecodeAhead::Run() {
  for (;;) {
    wake_.acquire();
    size_t n;
    {
      MutexLock lock(mu_);
      if (stop_) return;
      if (pending_.empty()) continue;  // pushed out by a newer request, already taken
      n = pending_.front();
      pending_.pop_front();
    }
    try {
      work_(n);
    } catch (...) {
      // bad_alloc, say: the reader decodes the chunk itself when it gets there, and reports.
    }
  }
}

}  // namespace backupfs
