// Backs up one disk: connects to its NBD export (libvirt's pull-mode job, or a qemu-nbd server
// of ours for a shut-off domain, see transport.h), maps what to read, and writes a stream (or, with
// -t raw, a raw image) into the saveset's storage that is written but not yet committed (renamed
// into place, or its multipart upload completed), so that a run whose other disk fails leaves no
// file of this one looking complete.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "capture/backup.h"
#include "capture/nbd_copy.h"
#include "capture/raw_target.h"
#include "common/domain_xml.h"
#include "common/nbd_endpoint.h"
#include "common/progress.h"
#include "stream/writer.h"

namespace backupfs {

// Where a disk's data comes from: the job's export (online) or a qemu-nbd of ours (offline),
// on this machine or on a remote hypervisor.
struct DiskSourcePlan {
  NbdEndpoint endpoint;
  std::string export_name;  // libvirt's: the target dev; qemu-nbd's: set to the same
  // The dirty bitmap context to read (inc, diff); "" reads the allocation only (copy, full).
  std::string dirty_context;
  // Online: where the connection goes when the disk is done, so that it outlives the job.
  NbdHandlePark* park = nullptr;
};

// What to write for the disk.
struct DiskTargetPlan {
  Storage* storage = nullptr;  // the saveset
  std::string name;            // the data file's name in it
  OutputType type = OutputType::kStream;
  StreamMetadata meta;  // sizes are filled in from the export
  std::optional<int> lz4_level;
  bool qemu_extents = false;
};

// A disk read and written, not yet in place.
struct CapturedDisk {
  DiskSummary summary;
  std::unique_ptr<StreamWriter> stream;
  std::unique_ptr<RawTarget> raw;
  // Commits: the sidecars, then the data file (fsynced and renamed, or uploaded); `may_commit`
  // as StreamWriter::Finish's.
  Status Finish(const StreamWriter::CommitCheck& may_commit);
};

Result<CapturedDisk> CaptureDisk(const DomainDisk& disk, const DiskSourcePlan& source,
                                 const DiskTargetPlan& target, ProgressBoard& progress,
                                 const std::function<bool()>& cancelled, RunLog& log);

}  // namespace backupfs
