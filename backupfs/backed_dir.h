// A directory of the mount that follows a directory on disk (the mount's root, a saveset).
// What it shows is decided at each refresh by what the directory holds:
//  - a saveset (a *.data file or a *.cpt): its restore points, `latest` -> the newest point,
//    and its broken-chain.* subdirectories that hold savesets (chains backupfs-capture set
//    aside), each shown as a saveset of its own;
//  - otherwise a collection: each subdirectory that holds a saveset (dot-directories skipped),
//    and `latest` -> the newest of them in natural name order (strverscmp: 2026-9 before
//    2026-10), broken-chain.* not counted.
// A saveset's data files are opened when it is first refreshed (listed, or looked into), not
// when its name is shown.
//
// Thread-safe. Lock order: refresh_mu_ before mu_; the saveset's locks are taken under
// refresh_mu_, never under mu_.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "backupfs/live_saveset.h"
#include "backupfs/node.h"
#include "common/thread_annotations.h"

namespace backupfs {

class Backing {
 public:
  struct Listing {
    bool saveset = false;  // else a collection
    struct timespec mtime = {};
    std::map<std::string, std::shared_ptr<const Node>> children;
  };

  // `ino`: the node that shows this directory (the parent of its entries).
  Backing(std::shared_ptr<Storage> storage, uint64_t ino, TreeShared* shared)
      : storage_(std::move(storage)), ino_(ino), shared_(shared) {}
  const std::string& dir() const { return storage_->address(); }

  // Looks at the disk again when the last look is older than the poll interval, then returns
  // the entries. Nodes whose content is unchanged are kept (same inode numbers).
  std::shared_ptr<const Listing> Refresh() EXCLUDES(refresh_mu_, mu_);
  // The entries as last refreshed; null before the first refresh.
  std::shared_ptr<const Listing> Current() const EXCLUDES(mu_);
  // The saveset shown here, once a refresh found one.
  std::shared_ptr<LiveSaveset> saveset() EXCLUDES(refresh_mu_);

 private:
  // `look`: the look at the directory this refresh took (LookAt), its listing included once
  // taken: whoever needs the listing takes it from there, so it is listed once.
  std::optional<Listing> SavesetListing(const Listing* cur, DirLook* look) REQUIRES(refresh_mu_);
  std::optional<Listing> CollectionListing(const Listing* cur, DirLook* look) REQUIRES(refresh_mu_);
  // Reports an error of the store once, until another (or none) is seen.
  void ReportOnce(const std::string& message) REQUIRES(refresh_mu_);

  const std::shared_ptr<Storage> storage_;
  const uint64_t ino_;
  TreeShared* const shared_;
  Mutex refresh_mu_ ACQUIRED_BEFORE(mu_);  // one refresh at a time
  std::chrono::steady_clock::time_point last_ GUARDED_BY(refresh_mu_);
  std::shared_ptr<LiveSaveset> saveset_ GUARDED_BY(refresh_mu_);
  uint64_t seen_version_ GUARDED_BY(refresh_mu_) = 0;
  std::string collection_stamp_ GUARDED_BY(refresh_mu_);  // "" when not trusted
  // The last look at the directory that found a saveset, when it can be trusted (not racy):
  // while the directory's stamp equals it, it still holds one and needs no listing.
  std::optional<StoreStamp> saveset_stamp_ GUARDED_BY(refresh_mu_);
  std::string last_error_ GUARDED_BY(refresh_mu_);  // reported, and not cleared since
  mutable Mutex mu_;
  std::shared_ptr<const Listing> listing_ GUARDED_BY(mu_);
};

}  // namespace backupfs
