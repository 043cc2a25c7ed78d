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

#include "backupfs/chain.h"
#include "backupfs/saveset_pool.h"

namespace backupfs {

class Backing;
class LiveSaveset;

enum class NodeKind { kDir, kImage, kFile, kSymlink };

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
  std::string source;  // kFile: the saveset file it shows
  std::string target;  // kSymlink
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
};

}  // namespace backupfs
