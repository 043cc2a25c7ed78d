// `backupfs-restore -a consolidate` and `-a retention`: a rolling full backup.
//
// The saveset is reached through its Storage only, so all of this is the same in a directory
// and in a store (s3://bucket/prefix); -o NEWDIR is a local directory.
//
// In place (no -o): under the saveset lock (Storage::Lock), finish what an
// interrupted consolidation left (consolidation_journal.h), plan (consolidation_plan.h), write
// each disk's new full backup into the staging directory, commit the journal, roll it forward,
// then delete the folded points' libvirt checkpoints, or leave them pending and name them when
// libvirt cannot be reached. A failure before the commit (a full disk, a damaged chunk, a
// signal) removes the staging directory: the saveset stays as it was.
//
// With -o NEWDIR: a standalone saveset whose full backup equals the point; the source is only
// read. NEWDIR continues with backupfs-capture when the point is the source chain's newest
// checkpoint (it gets `<domain>.cpt` and the checkpoint's XML); an older point makes an archive.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backupfs/chain.h"
#include "backupfs/consolidation_plan.h"
#include "common/run_log.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

// Retention: keep the last `keep_last` restore points and those younger than `keep_days`
// days (either rule keeps a point), and fold the older ones into the full backup.
struct RetentionPolicy {
  std::optional<unsigned> keep_last;
  std::optional<unsigned> keep_days;
};

struct ConsolidateOptions {
  std::string input;  // -i: the saveset
  // The saveset opened (storage/open_storage.h: a directory or s3://bucket/prefix); null: the
  // local directory `input`.
  std::shared_ptr<Storage> storage;
  std::string point;  // -u: the restore point the new full equals
  // -a retention instead of -u: the point is chosen under the lock, from what is there then.
  std::optional<RetentionPolicy> retention;
  std::time_t now = 0;  // for retention's ages
  std::string output;   // -o: a new saveset directory instead ("" = consolidate in place)
  bool dry_run = false;
  std::string uri;  // -U: the libvirt whose checkpoints are deleted ("" = qemu:///system)
  const std::atomic<bool>* stop = nullptr;
};

struct ConsolidateSummary {
  ConsolidationPlan plan;                        // plan.point "": retention kept every point
  uint64_t data_bytes = 0;                       // data in the new full backups
  uint64_t file_bytes = 0;                       // their size
  std::vector<std::string> pending_checkpoints;  // libvirt checkpoints left to delete
};

Result<ConsolidateSummary> RunConsolidate(const ConsolidateOptions& options, RunLog& log);

// The point to consolidate at under `policy` ("" when nothing is to go): the oldest point a
// rule keeps, or, for a diff, the checkpoint it was taken against. Copies are never counted
// nor folded. Pure: `now` is the time to measure ages from.
std::string RetentionPoint(const SavesetModel& model, const RetentionPolicy& policy,
                           std::time_t now);

}  // namespace backupfs
