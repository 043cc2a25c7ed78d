// A saveset directory as virtnbdbackup lays it out: which files are data files, of which disk
// and backup level, and which are leftovers of an interrupted run.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

enum class BackupLevel { kFull, kCopy, kInc, kDiff };

// `<disk>.full.data`, `<disk>.copy.data`, `<disk>.inc.<checkpoint>.data`,
// `<disk>.diff.<unixtime>.data`.
struct DataFileName {
  std::string file;  // the name in the directory
  std::string disk;
  BackupLevel level;
  std::string id;  // checkpoint (inc) or unixtime (diff); "" for full and copy
};

std::optional<DataFileName> ParseDataFileName(const std::string& name);

struct SavesetListing {
  std::string dir;
  // Data files, by disk, then full/copy before inc/diff, then by id in natural order
  // (virtnbdbackup.2 before virtnbdbackup.10).
  std::vector<DataFileName> data_files;
  std::vector<std::string> partial_files;  // `*.partial`: an interrupted backup
  // Sidecars (`.idx`, `.chksum`) whose data file is missing.
  std::vector<std::string> orphan_sidecars;
};

// Lists `dir`. Fails (naming the directory) only when it cannot be read; unrelated files are
// ignored. `disk` non-empty keeps only that disk's files.
Result<SavesetListing> ListSaveset(const std::string& dir, const std::string& disk = "");

}  // namespace backupfs
