// The namespace a mount shows (man backupfs(1)), following the disk:
//   /<restore point>/<disk>.raw          the disk image at that point
//   /<restore point>/vmconfig.xml        the domain XML saved with it (and qcow.json, firmware)
//   /latest -> <newest restore point>
//   /broken-chain.<time>/...             a chain backupfs-capture set aside, shown the same way
// or, over a directory of savesets, /<saveset>/... with a `latest` at each level (backed_dir.h).
//
// The kernel refers to nodes by inode number. A number is never reused: nodes come from a
// counter, and a node stays in the table while the kernel holds lookups of it (LOOKUP adds
// one, FORGET takes them back), even after it left the tree. Open files hold their image, not
// the node (fuse_ops.cc), so reads survive the point's removal.
//
// Thread-safe. mu_ is never held while refreshing a directory.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backupfs/backed_dir.h"
#include "backupfs/node.h"
#include "common/thread_annotations.h"

namespace backupfs {

class LiveTree {
 public:
  struct Options {
    OpenOptions open;
    size_t max_open_files = 1024;  // data files kept open by loaded savesets (saveset_pool.h)
    std::chrono::milliseconds poll_interval{500};
    std::function<void(const std::string&)> report;  // problems found when loading a saveset
  };
  LiveTree(std::shared_ptr<Storage> storage, const Options& options);
  LiveTree(const std::string& dir, const Options& options);  // a local directory

  // The node of `ino` while the kernel may refer to it; nullptr otherwise.
  std::shared_ptr<const Node> Get(uint64_t ino) const EXCLUDES(mu_);
  // The entry `name` of directory `parent` (refreshed first when it follows the disk), with
  // one more lookup counted; nullptr when there is none, or when a lazy directory could not
  // be read: then `error` (when given) says why.
  std::shared_ptr<const Node> Lookup(uint64_t parent, const std::string& name,
                                     Status* error = nullptr) EXCLUDES(mu_);
  // The kernel dropped `nlookup` lookups of `ino`.
  void Forget(uint64_t ino, uint64_t nlookup) EXCLUDES(mu_);

  using Entry = DirEntry;
  // ".", "..", then the entries (refreshed first when the directory follows the disk); only
  // "." and ".." when a lazy directory could not be read: then `error` (when given) says why.
  std::vector<Entry> List(const Node& dir, Status* error = nullptr);
  // A directory that follows the disk shows its newest content's time.
  struct timespec Mtime(const Node& n) const;

  const Node& root() const { return *root_; }
  SavesetPool& pool() { return shared_.pool; }
  size_t held() const EXCLUDES(mu_);

 private:
  TreeShared shared_;
  std::shared_ptr<const Node> root_;
  mutable Mutex mu_;
  struct Held {
    std::shared_ptr<const Node> node;
    uint64_t lookups = 0;
  };
  std::unordered_map<uint64_t, Held> held_ GUARDED_BY(mu_);
};

}  // namespace backupfs
