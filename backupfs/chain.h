// Restore points of a saveset: for each point and disk, the chain of data files to apply, in
// order, resolved through the metadata's checkpoint/parent links (never file mtimes).
//
// A point whose chain is broken (a missing parent, a loop of parent links, a file that does not
// scan, metadata that contradicts the file name) is unavailable for that disk, with the reason;
// the rest of the saveset stays available.
//
// Order of the points (oldest first). The metadata's date is local time without a zone: it
// repeats or goes backwards across a DST change or a move of the backup host to another zone,
// so it orders nothing that carries something better. The rule, by what each point carries:
//  1. A checkpoint (full or inc) goes by its position in the chain: the number of files from
//     the full backup up to it through the parent links, the longest over the point's disks
//     (a disk added mid-chain has a shorter chain and must not pull the point back). Points at
//     the same position (branches) follow `<domain>.cpt`, then the name.
//  2. A diff sits right after the checkpoint it was taken against (its parent) and before the
//     next one: virtnbdbackup and backupfs-capture take a diff against the newest checkpoint,
//     so any later checkpoint was created after it. Diffs against one checkpoint follow the
//     unix time of their file name `<disk>.diff.<unixtime>.data` (zone-free), then the name.
//  3. A copy has neither a checkpoint nor a zone-free time: it follows the deepest checkpoint
//     whose date is not later than its own (after that checkpoint's diffs), or comes first when
//     there is none. Only a copy taken within the hour a DST change repeats can be misplaced,
//     by one checkpoint, and only among the points of the mount, never inside a chain.
// `latest` is the last point in this order.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
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
  std::string date;  // metadata date of its newest file (shown, never used for order)
  std::vector<DiskChain> disks;
};

struct SavesetModel {
  std::string dir;                    // the saveset's address: a directory or s3:// URL
  std::shared_ptr<Storage> storage;   // where its files are
  std::vector<RestorePoint> points;   // oldest first, by the rule above
  std::string latest;                 // name of the newest point, "" if none
  std::vector<std::string> problems;  // what is unavailable and why, one message each
  // The part of `problems` that is damage (a data file that cannot be used, a chain that does
  // not resolve), as opposed to leftovers of interrupted runs and rebuilt indexes: what a
  // restore of "the newest point" must not silently step around.
  std::vector<std::string> damage;
  // Why a disk has no chain at a point although it has data files: point -> disk -> message.
  // Point "*" holds a disk whose full or copy backup cannot be used (no point has it).
  std::map<std::string, std::map<std::string, std::string>> unavailable;
  // The listing of the saveset's directory (Storage::List("")) the load was made from: its
  // other files are found there without listing it again. nullopt in a model built by hand.
  std::optional<std::vector<StoredObject>> listing;
};

struct OpenOptions {
  ReaderOptions reader;
  // Asked for each data file before it is opened (its storage's Describe(name)): a reader of
  // that file to use instead of opening it, or nullptr to open it. A live mount hands back
  // the readers of files it has already open and that have not changed, so that a reload costs
  // only the new files. The hook vouches for the file; it is called from LoadSaveset's thread.
  // `version`: the file's version as listed ("" when unknown).
  std::function<std::shared_ptr<StreamReader>(const std::string& path, const std::string& version)>
      reuse;
};

// Scans the saveset and resolves every restore point. Fails only if it cannot be listed.
Result<SavesetModel> LoadSaveset(std::shared_ptr<Storage> saveset, const OpenOptions& options);
// The same from a listing of the saveset (Storage::List("")) the caller took.
Result<SavesetModel> LoadSaveset(std::shared_ptr<Storage> saveset, const OpenOptions& options,
                                 const std::vector<StoredObject>& listed);
// A saveset in a local directory.
Result<SavesetModel> LoadSaveset(const std::string& dir, const OpenOptions& options);

}  // namespace backupfs
