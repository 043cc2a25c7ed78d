// The commit point of a consolidation (man backupfs-stream(5), CONSOLIDATION).
//
// A consolidation replaces several files of a saveset at once: each disk's full backup, the
// incrementals folded into it, their per-point files, the checkpoint list. No single rename
// can do that, so it goes through a redo journal:
//  1. stage: every new file is written, fsynced, under `<saveset>/.backupfs-consolidate/`
//     (in a store: under that key prefix, each object complete when its upload completes);
//  2. commit: `journal.json` is written there (fsynced, renamed into place, directory
//     fsynced; in a store, one PUT, which is atomic). It lists the staged files and where each
//     goes, and the files that go;
//  3. roll forward: staged files are renamed into place (sidecars before their data file; in
//     a store a server-side copy, then the delete of the staged object), the listed files
//     removed, the directory fsynced, the journal and the staging directory removed.
// Before the commit a reader sees the old saveset (the staging directory is not part of it);
// from the commit on, ListSaveset() applies the journal, so a reader sees the new saveset
// whatever part of step 3 has run. A writer (capture, consolidation, retention) that takes the
// saveset lock first calls CompleteConsolidation(): it rolls a committed journal forward, or
// removes an uncommitted staging directory (and, in a store, aborts the multipart uploads a
// killed run left under it). Every step of the roll forward can be repeated: a rename whose
// staged file is gone was done, and a store's copy killed before its delete is made again.
//
// All of it goes through the saveset's Storage, so it is the same in a directory and in a
// bucket; fsyncs of directories, the local half of "durable", happen only where the storage
// has a LocalDir().
//
// Libvirt checkpoints of folded points go last: the journal names them, CompleteConsolidation
// moves them into `<saveset>/.backupfs-pending-checkpoints.json`, and a run that can reach
// libvirt deletes them and shortens that list.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

inline constexpr char kStagingDirName[] = ".backupfs-consolidate";
inline constexpr char kPendingCheckpointsName[] = ".backupfs-pending-checkpoints.json";
inline constexpr char kJournalName[] = ".backupfs-consolidate/journal.json";

struct ConsolidationJournal {
  std::string point;  // the restore point the new full backups equal
  // Staged file -> its place, both relative to the saveset; applied in this order.
  std::vector<std::pair<std::string, std::string>> install;
  std::vector<std::string> remove;               // files of the saveset that go, relative to it
  std::string domain;                            // whose checkpoints these are
  std::vector<std::string> libvirt_checkpoints;  // to delete in libvirt, oldest first

  bool operator==(const ConsolidationJournal&) const = default;
};

std::string EncodeJournal(const ConsolidationJournal& journal);
// Malformed text, or a path that leaves the saveset (absolute, "..", or staged outside the
// staging directory), is Corruption naming `file`.
Result<ConsolidationJournal> DecodeJournal(const std::string& text, const std::string& file);

std::string StagingDir(const std::string& saveset);
std::string JournalPath(const std::string& saveset);

// The committed journal of `saveset`, or nullopt when there is none.
Result<std::optional<ConsolidationJournal>> ReadJournal(const std::string& saveset);
Result<std::optional<ConsolidationJournal>> ReadJournal(const Storage& saveset);

// Step 2: makes the consolidation happen, whatever comes after (see above).
Status CommitJournal(Storage& saveset, const ConsolidationJournal& journal);
Status CommitJournal(const std::string& saveset, const ConsolidationJournal& journal);

// Step 3 for a committed journal, then the libvirt checkpoints into the pending list; an
// uncommitted staging directory is removed instead. Returns what it did, for the log ("" when
// there was nothing to do). Call with the saveset lock held.
Result<std::string> CompleteConsolidation(Storage& saveset);
Result<std::string> CompleteConsolidation(const std::string& saveset);

// Makes the renames and removals made in `dirs` of the saveset (relative names, "" for the
// saveset itself) last: fsyncs each that exists in a local directory; nothing in a store,
// whose operations are durable when they return.
Status SyncDirs(const Storage& saveset, const std::vector<std::string>& dirs);

// The libvirt checkpoints left to delete after consolidations of `saveset`.
struct PendingCheckpoints {
  std::string domain;
  std::vector<std::string> checkpoints;  // oldest first
};
Result<PendingCheckpoints> ReadPendingCheckpoints(const Storage& saveset);
Result<PendingCheckpoints> ReadPendingCheckpoints(const std::string& saveset);
// Replaces the list (removes the file when `pending` lists none).
Status WritePendingCheckpoints(Storage& saveset, const PendingCheckpoints& pending);
Status WritePendingCheckpoints(const std::string& saveset, const PendingCheckpoints& pending);

}  // namespace backupfs
