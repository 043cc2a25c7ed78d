// What a backup run will write, decided before anything touches the domain: the disks it takes
// (and why it skips the others), where it stands in the checkpoint chain, and its files' names.
// Pure logic over the domain XML and the saveset's checkpoint list; backup.cc acts on it the
// same way whether the domain is local or remote.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "capture/backup.h"
#include "capture/checkpoints.h"
#include "common/domain_xml.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

// Where this run stands in the chain.
struct ChainStep {
  std::string checkpoint;         // the metadata's checkpointName
  std::string parent;             // "" for full and copy
  std::string id;                 // names this run's files: checkpoint, "copy" or unixtime
  bool create = false;            // the job creates `checkpoint` (full, inc)
  std::vector<std::string> list;  // the .cpt list after this run
};

// A disk to back up and how.
struct SelectedDisk {
  DomainDisk disk;
  bool raw = false;  // a raw/block/network disk taken with --raw: no bitmap, copy/full only
};

struct DiskSelection {
  std::vector<SelectedDisk> disks;   // backed up
  std::vector<JobDisk> job_disks;    // every disk, for the job's XML
  std::vector<std::string> skipped;  // "skipping disk vdb: excluded (-x)", for the log
};

// The disks a run at `level` (resolved: never auto) takes from the domain XML, given -i, -x
// and --raw. Errors name the domain: an -i disk it does not have, or no disk to back up.
Result<DiskSelection> SelectDisks(const std::string& domain_xml, const BackupOptions& o,
                                  CaptureLevel level);

// The step a run at `level` takes after `list` (the saveset's .cpt, oldest first; not empty
// for inc and diff); `now` names a diff's files.
ChainStep PlanChainStep(CaptureLevel level, const std::vector<std::string>& list, std::time_t now);

// The data file's name in the saveset: `<disk>.full.data`, `<disk>.inc.<id>.data`, ...
std::string DataFileName(const SelectedDisk& d, CaptureLevel level, const ChainStep& step);

// Never replaces a data file: a full or copy needs an empty saveset, and an inc or diff
// whose file exists (a run that died between its rename and the .cpt update, or two diffs in
// one second) stops rather than overwrite a restore point.
Status RefuseExistingBackup(const Storage& saveset, const std::vector<SelectedDisk>& disks,
                            CaptureLevel level, const ChainStep& step);

}  // namespace backupfs
