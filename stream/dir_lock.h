// One writer per saveset directory. backupfs-capture, consolidation and retention take an
// exclusive flock on the directory itself for their whole run, so that a capture and a
// consolidation never interleave their files; a second writer is refused at once, naming the
// process that holds the lock.
//
// Readers (a mount, a restore) never take the lock: a reader holding it even briefly would make
// a writer's non-blocking attempt fail. A live mount asks SavesetBusy() instead and waits for a
// writer to finish before it shows the directory's new state.
#pragma once

#include <string>
#include <vector>

#include "stream/file.h"
#include "stream/status.h"

namespace backupfs {

class SavesetLock {
 public:
  SavesetLock() = default;
  explicit SavesetLock(UniqueFd fd) : fd_(std::move(fd)) {}
  bool held() const { return fd_.valid(); }

 private:
  UniqueFd fd_;  // the directory, flocked; closing it releases the lock
};

// Locks `dir` (which must exist) or fails at once: FailedPrecondition naming the directory and
// the holders when another process has it.
Result<SavesetLock> LockSaveset(const std::string& dir);

// "pid 1234 (backupfs-capture)" for every process holding a flock on `path` (from
// /proc/locks), "unknown process" when none is found.
std::string LockHolders(const std::string& path);

// Whether any process holds a flock on `path` (from /proc/locks, without taking one).
bool SavesetBusy(const std::string& path);

}  // namespace backupfs
