// `backupfs-restore -a restore`: writes the disks of one restore point as images (qcow2 by
// default, thin), with the domain XML and boot files beside them, and optionally defines the
// domain in libvirt.
//
// Order of work, so that a failure leaves nothing that looks complete: plan (every refusal),
// check the domain name (-D), write each disk as `<image>.partial` and rename it once flushed
// and fsynced, then the boot files and the XML, then define. A stop request (`stop` set, by a
// signal or by a failed disk) ends every disk's copy; the partial images are removed.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/run_log.h"
#include "restore/options.h"
#include "stream/status.h"

namespace backupfs {

struct RestoreSummary {
  std::string point;
  std::vector<std::string> images;  // what was written, in disk order
  uint64_t data_bytes = 0;          // data read from the saveset
  uint64_t written_bytes = 0;       // data written (the rest was zeros, left thin)
  std::string config;               // the domain XML written ("" when none)
  std::string defined;              // the domain defined with -D ("" when none)
};

// `stop` may be set at any time from another thread (a signal handler thread).
Result<RestoreSummary> RunRestore(const RestoreOptions& options, RunLog& log,
                                  std::atomic<bool>& stop);

}  // namespace backupfs
