// What a consolidation at a restore point does to a saveset, decided before anything is
// written: the new full backup of each disk (the chain up to the point, merged), the points
// that are folded into it and go, and every file that goes with them.
//
// The rule. Let C be the files of the point's chains (every disk). A point whose chain on
// some disk uses a file of C but not that disk's newest file of C is older than the point on
// the same chain (the full, earlier incs, diffs taken against them): it is folded. A point
// whose chains go through the point continues it and stays; its chain then starts at the new
// full. A point that shares no file with C (a copy) stays as it is.
//
// Logic over a loaded saveset and its listing (through SavesetModel::storage, a directory or
// a store): nothing is written here.
#pragma once

#include <string>
#include <vector>

#include "backupfs/chain.h"
#include "stream/metadata.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

struct NewFull {
  std::string disk;
  DiskChain chain;       // the point's chain, merged into the new full
  std::string file;      // `<disk>.full.data`, relative to the saveset
  std::string old_full;  // the full it replaces (its mtime carries over: see man page)
  StreamMetadata meta;   // of the new full; data_size is filled in when it is written
};

// Whether the point is a checkpoint (a full or inc backup), which a chain can continue from.
bool IsCheckpointPoint(const RestorePoint& point);

// `point` of `model`, when it can become a full backup: it exists, is a checkpoint, and
// resolves on every disk it has files for. Refusals name the saveset.
Result<const RestorePoint*> FindCheckpointPoint(const SavesetModel& model,
                                                const std::string& point);

// A file's name relative to `saveset` from its full name for messages (Storage::Describe,
// which a data file's reader has as its path); `described` itself when it is not in it.
std::string RelativeName(const Storage& saveset, const std::string& described);

// The new full backup of one disk at the chain's newest point, in `saveset`.
NewFull MakeNewFull(const DiskChain& chain, const Storage& saveset);

struct ConsolidationPlan {
  std::string point;
  std::vector<std::string> folded_points;        // oldest first
  std::vector<std::string> kept_points;          // oldest first, the point included
  std::vector<NewFull> fulls;                    // empty: the point is the full backup already
  std::vector<std::string> remove;               // files that go, relative to the saveset
  uint64_t remove_bytes = 0;                     // their size
  std::string checkpoint_file;                   // `<domain>.cpt` ("" when the saveset has none)
  std::vector<std::string> checkpoint_list;      // its new contents
  std::string checkpoint_xml;                    // `checkpoints/<point>.xml` ("" when none)
  std::string domain;                            // from `<domain>.cpt` ("" when none)
  std::vector<std::string> libvirt_checkpoints;  // folded checkpoints, oldest first

  bool nothing_to_do() const { return fulls.empty(); }
};

// Plans a consolidation of `model` (LoadSaveset of the saveset) at `point`. Refused, naming the
// saveset: a point that does not exist, a diff or copy (only a checkpoint continues a chain),
// a point some disk cannot be resolved at, and any damage in the saveset (a consolidation
// removes files: it must understand every chain first).
Result<ConsolidationPlan> PlanConsolidation(const SavesetModel& model, const std::string& point);

}  // namespace backupfs
