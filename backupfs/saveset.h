// A saveset directory as virtnbdbackup lays it out: which files are data files, of which disk
// and backup level, and which are leftovers of an interrupted run.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

enum class BackupLevel { kFull, kCopy, kInc, kDiff };

// `<disk>.full.data`, `<disk>.copy.data`, `<disk>.inc.<checkpoint>.data`,
// `<disk>.diff.<unixtime>.data`.
struct DataFileName {
  // The file to open, relative to the saveset directory: the name, or during the roll forward
  // of a consolidation the staged file that replaces it (consolidation_journal.h).
  std::string file;
  std::string disk;
  BackupLevel level;
  std::string id;       // checkpoint (inc) or unixtime (diff); "" for full and copy
  std::string version;  // of `file` as listed (StoredObject::version); "" when not known
};

std::optional<DataFileName> ParseDataFileName(const std::string& name);

// Restore point `id`'s own files beside the data, and the names a mount shows them by under the
// point: "vmconfig.<id>.xml" -> "vmconfig.xml", "<disk>.<id>.qcow.json" -> "<disk>.qcow.json",
// "<name>.<id>" (a boot file copy, `autostart.<id>`) -> "<name>"; "" when `file` is not one
// of `id`'s files (data files, their sidecars and run logs never are).
std::string PointFileShownName(const std::string& file, const std::string& id);
inline bool IsPointFile(const std::string& file, const std::string& id) {
  return !PointFileShownName(file, id).empty();
}

struct SavesetListing {
  std::string dir;
  // Data files, by disk, then full/copy before inc/diff, then by id in natural order
  // (virtnbdbackup.2 before virtnbdbackup.10).
  std::vector<DataFileName> data_files;
  std::vector<std::string> partial_files;     // `*.partial`: an interrupted backup
  std::vector<std::string> checkpoint_lists;  // `<domain>.cpt`
  // Sidecars (`.idx`, `.chksum`) whose data file is missing.
  std::vector<std::string> orphan_sidecars;
};

// Lists `dir` as it is, or as a committed consolidation makes it (consolidation_journal.h).
// Fails (naming the directory or the journal) only when they cannot be read; unrelated files
// are ignored. `disk` non-empty keeps only that disk's files.
Result<SavesetListing> ListSaveset(const Storage& saveset, const std::string& disk = "");
// The same from a listing of the saveset (Storage::List("")) the caller already has: a load
// lists a store's prefix once.
Result<SavesetListing> ListSaveset(const Storage& saveset, const std::vector<StoredObject>& listed,
                                   const std::string& disk = "");
Result<SavesetListing> ListSaveset(const std::string& dir, const std::string& disk = "");

}  // namespace backupfs
