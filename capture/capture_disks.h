// Reads a run's disks in parallel (-w workers) into their files, and puts the files in place
// only when every disk succeeded: a run whose disk fails leaves no file looking complete.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "capture/disk_capture.h"
#include "common/run_log.h"

namespace backupfs {

struct DiskWork {
  DomainDisk disk;
  DiskSourcePlan source;
  DiskTargetPlan target;
};

// Captures every disk, `workers` at a time (0: all at once). The first failure stops the
// others; it is returned prefixed with `what` ("domain vm1") and the disk, rather than a
// disk that stopped because of it. `cancelled` is asked before every read.
Result<std::vector<CapturedDisk>> CaptureDisks(const std::vector<DiskWork>& work, unsigned workers,
                                               const std::function<bool()>& cancelled,
                                               bool progress_bar, const std::string& what,
                                               RunLog& log);

// Finishes (commits) every file into `saveset`, asking `may_commit` before each commit; when
// one fails, it (its sidecars, stored before the commit) and those already finished are removed
// again. When `may_commit` refused, those already finished stay: what refuses a commit is a
// lost lock, and by then they may be another run's files of the same name.
Status FinishDisks(std::vector<CapturedDisk>& captured, Storage& saveset, const std::string& what,
                   const StreamWriter::CommitCheck& may_commit);

}  // namespace backupfs
