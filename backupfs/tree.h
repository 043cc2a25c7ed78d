// The namespace a mounted saveset shows (man backupfs(1)):
//   /<restore point>/<disk>.raw          the disk image at that point
//   /<restore point>/vmconfig.xml        the domain XML saved with it (and qcow.json, firmware)
//   /latest -> <newest restore point>
// Built once at mount; immutable afterwards, so lookups need no locking.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backupfs/chain.h"
#include "backupfs/image.h"

namespace backupfs {

enum class NodeKind { kDir, kImage, kFile, kSymlink };

struct Node {
  uint64_t ino = 0;  // 1 is the root
  uint64_t parent = 1;
  NodeKind kind = NodeKind::kDir;
  std::string name;
  uint64_t size = 0;
  struct timespec mtime = {};
  std::map<std::string, uint64_t> children;  // directories: name -> ino
  std::shared_ptr<LazyImage> image;          // kImage: built when first read
  std::string source;                        // kFile: the saveset file it shows
  std::string target;                        // kSymlink
};

class MountTree {
 public:
  static MountTree Build(const SavesetModel& model);

  // nullptr when there is no such inode / entry.
  const Node* Get(uint64_t ino) const;
  const Node* Lookup(uint64_t parent, const std::string& name) const;
  size_t size() const { return nodes_.size(); }
  // Builds every image: for reporting (backupfs -d), not for mounting.
  uint64_t extent_count() const;

 private:
  uint64_t Add(uint64_t parent, NodeKind kind, const std::string& name, struct timespec mtime);
  void AddPointFiles(uint64_t dir, const std::string& saveset, const RestorePoint& point,
                     const std::vector<std::string>& names);
  std::vector<Node> nodes_;  // nodes_[ino - 1]
};

// "2026-11-26T05:00:00.123456" (local time, as virtnbdbackup writes it) -> time; 0 if bad.
struct timespec ParseBackupDate(const std::string& iso);

}  // namespace backupfs
