// Restore points of a saveset: for each point and disk, the chain of data files to apply, in
// order, resolved through the metadata's checkpoint/parent links (never file mtimes).
//
// A point whose chain is broken (a missing parent, a file that does not scan, metadata that
// contradicts the file name) is unavailable for that disk, with the reason; the rest of the
// saveset stays available.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backupfs/saveset.h"
#include "stream/reader.h"
#include "stream/status.h"

namespace backupfs {

// One data file of the saveset, opened.
struct SavesetFile {
  DataFileName name;
  std::shared_ptr<StreamReader> reader;
};

struct DiskChain {
  std::string disk;
  std::vector<std::shared_ptr<StreamReader>> files;  // full or copy first, newest last
  uint64_t virtual_size = 0;                         // of the newest file: disks grow
};

struct RestorePoint {
  std::string name;  // checkpoint (virtnbdbackup.N), "copy", or a diff's identifier
  std::string id;    // the suffix of its per-point files (vmconfig.<id>.xml, ...)
  std::string date;  // metadata date of its newest file
  std::vector<DiskChain> disks;
};

struct SavesetModel {
  std::string dir;
  std::vector<RestorePoint> points;   // oldest first
  std::string latest;                 // name of the newest point, "" if none
  std::vector<std::string> problems;  // what is unavailable and why, one message each
};

struct OpenOptions {
  ReaderOptions reader;
};

// Scans `dir` and resolves every restore point. Fails only if the directory cannot be listed.
Result<SavesetModel> LoadSaveset(const std::string& dir, const OpenOptions& options);

}  // namespace backupfs
