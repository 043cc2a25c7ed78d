// Bounds the data files that the loaded savesets of a mount keep open: when a load or a use
// takes the total over the bound, the least recently used other savesets are evicted (their
// readers close once no open image holds them; they load again when next used). The saveset
// in use is never evicted, so one saveset larger than the bound still works.
//
// Thread-safe. Evict() is called with no lock of the pool held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>

#include "common/thread_annotations.h"

namespace backupfs {

class LiveSaveset;

class SavesetPool {
 public:
  explicit SavesetPool(size_t max_open_files) : max_(max_open_files) {}
  // `s` was just loaded or used, holding `open_files` data files.
  void Used(const std::shared_ptr<LiveSaveset>& s, size_t open_files) EXCLUDES(mu_);
  // Data files of loaded savesets (not counting those only open images still hold).
  size_t open_files() const EXCLUDES(mu_);
  size_t loaded() const EXCLUDES(mu_);

 private:
  struct Entry {
    std::weak_ptr<LiveSaveset> saveset;
    size_t open_files = 0;
    uint64_t last_use = 0;
  };
  const size_t max_;
  mutable Mutex mu_;
  std::map<const LiveSaveset*, Entry> entries_ GUARDED_BY(mu_);
  uint64_t tick_ GUARDED_BY(mu_) = 0;
};

}  // namespace backupfs
