// A node of the mount's namespace, as the kernel sees it through its inode number.
//
// Nodes are immutable: what a node shows never changes while the kernel may hold its inode
// number. A restore point whose chain changes (consolidation), a saveset directory that is
// replaced, a `latest` that moves: each gets a new node with a new number, from a counter that
// never repeats; the old node lives on while the kernel or an open file still refers to it.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backupfs/chain.h"
#include "backupfs/saveset_pool.h"
#include "guest/guest_fs.h"
#include "stream/status.h"

namespace backupfs {

class Backing;
class GuestVolume;
class LiveSaveset;
struct Node;

// kPartition: a partition's bytes; kText: a small generated file (the partition listing);
// kGuest: a regular file, device node, fifo or socket of a guest filesystem (guest
// directories are kDir and guest symlinks kSymlink, with `guest` set).
enum class NodeKind { kDir, kImage, kFile, kSymlink, kPartition, kText, kGuest };

// A directory entry as readdir shows it.
struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  NodeKind kind = NodeKind::kFile;
  mode_t type = 0;  // S_IFMT bits when the kind does not tell (guest files); 0 otherwise
};

// A directory whose entries are worked out on first use (a disk's partitions, a guest
// directory), so that what is never browsed costs nothing. Thread-safe.
class LazyDir {
 public:
  virtual ~LazyDir() = default;
  // The entries, without "." and "..". An error (an unreadable or corrupt disk) names what
  // failed; the FUSE layer logs it and answers EIO.
  virtual Result<std::vector<DirEntry>> List(const Node& self) = 0;
  // The entry `name` (nullptr when there is none), a new node each time.
  virtual Result<std::shared_ptr<const Node>> Lookup(const Node& self, const std::string& name) = 0;
};

// A node of a guest filesystem: which filesystem, and its attributes as stored.
struct GuestNode {
  std::shared_ptr<GuestVolume> volume;
  GuestAttr attr;
};

struct Node {
  uint64_t ino = 0;  // 1 is the root
  uint64_t parent = 1;
  NodeKind kind = NodeKind::kDir;
  std::string name;
  // What the node shows, as a signature: a refresh keeps the node when the key is unchanged.
  std::string key;
  uint64_t size = 0;
  struct timespec mtime = {};
  // A restore point's directory: its files, fixed with it.
  std::map<std::string, std::shared_ptr<const Node>> files;
  // A directory that follows one on disk (the root, a saveset): its entries change.
  std::shared_ptr<Backing> backing;
  // kImage: where its image comes from (`key` is the chain's signature).
  std::shared_ptr<LiveSaveset> saveset;
  std::string point, disk;
  std::shared_ptr<Storage> store;             // kFile: the saveset it shows a file of,
  std::string source;                         // and that file's name there
  std::string target;                         // kSymlink
  std::shared_ptr<LazyDir> lazy;              // kDir whose entries are worked out on first use
  std::shared_ptr<const ByteSource> bytes;    // kPartition
  std::string text;                           // kText
  std::map<std::string, std::string> xattrs;  // kPartition: what blkid reports, user.blkid.*
  std::shared_ptr<const GuestNode> guest;     // a node of a guest filesystem
};

// What every directory of one mount shares. Outlives its nodes.
struct TreeShared {
  TreeShared(OpenOptions o, size_t max_open_files, std::chrono::milliseconds interval,
             std::function<void(const std::string&)> r)
      : open(std::move(o)), pool(max_open_files), poll_interval(interval), report(std::move(r)) {}
  uint64_t NewIno() { return next_ino.fetch_add(1); }

  const OpenOptions open;
  SavesetPool pool;
  // How often a directory that follows the disk looks at it again (on lookup and readdir).
  const std::chrono::milliseconds poll_interval;
  const std::function<void(const std::string&)> report;  // problems found when loading
  std::atomic<uint64_t> next_ino{2};
  std::atomic<uint64_t> next_volume{1};  // guest filesystems opened (guest_tree.h)
};

}  // namespace backupfs
