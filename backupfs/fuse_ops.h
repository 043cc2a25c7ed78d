// The FUSE low-level operations over a LiveTree: a thin adapter. Status values become errno
// here and nowhere else; every exception is caught here.
//
// Caching: the entries of directories that follow the disk (the root, a saveset) and their
// attributes expire after kLiveTimeout, and their listings are never cached, so new points
// show and removed ones go without notifying the kernel (no fuse_lowlevel_notify_inval_*);
// everything inside a restore point never changes (a change makes new nodes) and is cached
// for a day, page cache included.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "backupfs/tree.h"
#include "common/thread_annotations.h"

namespace backupfs {

// Owns what fi->fh points to (open files and directories) from open to release, or, when the
// session ends with some still open (an unmount while a file is held), until the context goes.
class HandleTable {
 public:
  template <typename T>
  uint64_t Add(std::unique_ptr<T> handle) EXCLUDES(mu_) {
    T* raw = handle.get();
    MutexLock l(mu_);
    owned_.emplace(raw, std::shared_ptr<void>(std::move(handle)));
    return reinterpret_cast<uint64_t>(raw);
  }
  void Remove(uint64_t fh) EXCLUDES(mu_) {
    std::shared_ptr<void> gone;  // destroyed after the lock is released
    MutexLock l(mu_);
    auto it = owned_.find(reinterpret_cast<void*>(fh));
    if (it == owned_.end()) return;
    gone = std::move(it->second);
    owned_.erase(it);
  }

 private:
  Mutex mu_;
  std::unordered_map<void*, std::shared_ptr<void>> owned_ GUARDED_BY(mu_);
};

struct FuseContext {
  std::unique_ptr<LiveTree> tree;
  HandleTable handles;
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t umask = 0227;  // files 0440, directories 0550
  bool splice = false;  // -o splice: fd replies for holes, zeros and unchecked raw data
  std::function<void(const std::string&)> log_error;
  // Runs once, on the first request after INIT: the kernel resets the mount's readahead when
  // it processes our INIT reply, so raising it must wait until then.
  std::function<void()> after_init;
  std::once_flag after_init_once;
  std::atomic<uint64_t> read_errors{0};
};

// The operations table; the session's userdata must be a FuseContext*.
const fuse_lowlevel_ops& BackupfsOps();

}  // namespace backupfs
