// One saveset (a directory or a store's prefix) as a live mount sees it: the restore points it
// holds now, reloaded when its listing changes, its data files open only while it is in use.
//
// A reload goes through LoadSaveset with OpenOptions::reuse: the readers of data files whose
// version (a local file's device, inode, size and mtime; an object's ETag) is unchanged are
// handed back, so it costs only the new files, and images whose chain is unchanged keep their
// extent maps. While a writer (backupfs-capture, consolidation) holds the saveset's lock
// (Storage::Busy), the state shown
// stays as it was: a reload then shows no restore point that was not shown before, so a
// half-written multi-disk point never appears.
//
// Requests per poll of a saveset on a store: one listing of its prefix (LookAt), which also
// serves the load when it changed (the scan of its data files and the list of its other
// files); a load adds one look at the lock, after it (a writer that held the lock while the
// saveset was listed still holds it then, or has finished and changed the listing, so the next
// poll loads again), and the reads of the files that are new.
//
// Thread-safe. Lock order: load_mu_ before mu_. The pool is told of a load with load_mu_ held
// (it may evict other savesets, which takes their mu_ only).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backupfs/chain.h"
#include "backupfs/image.h"
#include "common/thread_annotations.h"

namespace backupfs {

class SavesetPool;

// Whether `dir` of `storage` ("" itself) holds a saveset: a data file (*.data) or a checkpoint
// list (*.cpt). A directory that is not there (NotFound) holds none; any other error of its
// listing (a store that did not answer) is returned: the caller keeps what it showed.
Result<bool> LooksLikeSaveset(const Storage& storage, std::string_view dir = "");
// The same from a listing of the directory (or the error it gave).
Result<bool> LooksLikeSaveset(const Result<std::vector<StoredObject>>& listed);

// One look at a saveset's directory for a refresh. On a store (no local directory) the look is
// the listing itself, and its stamp is derived from it: one listing of the prefix tells
// whether anything changed and serves the load. In a local directory it is a stat (cheap), and
// the directory is listed only when a load or a check needs it.
struct DirLook {
  StoreStamp stamp;
  std::optional<Result<std::vector<StoredObject>>> listed;  // nullopt: not listed yet
};
DirLook LookAt(const Storage& storage);
// The look's listing, listing the directory when the look has none yet.
const Result<std::vector<StoredObject>>& ListedBy(const Storage& storage, DirLook* look);

// A loaded saveset; immutable once built.
struct SavesetState {
  struct OpenedFile {
    std::shared_ptr<StreamReader> reader;
    std::string version;  // of the file when it was opened (StoredFile::version)
  };
  SavesetModel model;
  // LoadSaveset failed (an I/O error, no descriptors left): nothing was loaded.
  bool failed = false;
  // Loaded with no damage: worth trusting until the directory changes. A failed or damaged
  // load (a file that could not be opened, say) is tried again at the next poll.
  bool whole = true;
  std::map<std::string, uint64_t> files_listed;  // the saveset's files and their sizes
  std::vector<std::string> broken_chains;        // broken-chain.* subdirectories holding savesets
  std::map<std::string, OpenedFile> files;       // every data file in some chain, by Describe(name)
  // point -> disk -> its image (merged when first read) and the identities of its chain.
  std::map<std::string, std::map<std::string, std::shared_ptr<LazyImage>>> images;
  std::map<std::string, std::map<std::string, std::string>> chains;

  const RestorePoint* Find(const std::string& point) const;
  // The per-point files of `id` (vmconfig.<id>.xml, ...): shown name -> name in the directory.
  std::map<std::string, std::string> PointFiles(const std::string& id) const;
  // Equal signatures: the same content (chains and per-point files).
  std::string PointSignature(const RestorePoint& p) const;
  std::string ContentSignature() const;
};

class LiveSaveset : public std::enable_shared_from_this<LiveSaveset> {
 public:
  struct Options {
    OpenOptions open;
    SavesetPool* pool = nullptr;  // outlives every LiveSaveset
    // Problems a load finds (each reported once per LiveSaveset).
    std::function<void(const std::string&)> report;
  };
  LiveSaveset(std::shared_ptr<Storage> storage, Options options)
      : storage_(std::move(storage)), options_(options) {}
  const std::string& dir() const { return storage_->address(); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // `version` changes when what the saveset shows changes; `state` is null when the saveset
  // was evicted and the directory has not changed since.
  struct Snapshot {
    uint64_t version = 0;
    std::shared_ptr<const SavesetState> state;
  };
  // Reloads when the directory changed since the last load (or that load was racy) and no
  // writer holds it; the first call loads. Callers rate-limit it.
  Snapshot Poll() EXCLUDES(load_mu_, mu_);
  // The same with a look the caller took (LookAt): its listing, when it has one, serves the
  // load; else the directory is listed when a load needs it.
  Snapshot Poll(DirLook* look) EXCLUDES(load_mu_, mu_);
  // The state, loaded first when evicted.
  Snapshot Loaded() EXCLUDES(load_mu_, mu_);
  // The image of `disk` at `point`, loading the saveset when evicted. NotFound when the point
  // is gone or its chain is no longer `chain` (a signature from SavesetState::chains).
  Result<std::shared_ptr<LazyImage>> Image(const std::string& point, const std::string& disk,
                                           const std::string& chain) EXCLUDES(load_mu_, mu_);
  // Drops the state: its data files close once no open image holds them.
  void Evict() EXCLUDES(mu_);

 private:
  Snapshot Current() EXCLUDES(mu_);
  // Loads and returns what it installed (a concurrent eviction may drop it right after: the
  // caller keeps its own reference).
  Snapshot LoadLocked(DirLook* look) REQUIRES(load_mu_) EXCLUDES(mu_);
  void Report(const SavesetState& state) EXCLUDES(mu_);

  const std::shared_ptr<Storage> storage_;
  const Options options_;
  Mutex load_mu_ ACQUIRED_BEFORE(mu_);  // held through a load: one at a time
  Mutex mu_;
  std::shared_ptr<const SavesetState> state_ GUARDED_BY(mu_);
  uint64_t version_ GUARDED_BY(mu_) = 0;         // 0: never loaded
  std::string content_ GUARDED_BY(mu_);          // ContentSignature of the last load
  std::set<std::string> shown_ GUARDED_BY(mu_);  // points shown by a load with no writer busy
  StoreStamp stamp_ GUARDED_BY(mu_);             // of the saveset before the last load
  bool trusted_ GUARDED_BY(mu_) = false;         // that load saw a final state (not racy, not busy)
  std::set<std::string> reported_ GUARDED_BY(mu_);
};

}  // namespace backupfs
