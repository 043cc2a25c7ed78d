// The guest side of a restore point's disk (man backupfs(1), GUEST FILES):
//   <disk>.parts/<N>          partition N's bytes; user.blkid.* xattrs say what blkid found
//   <disk>.parts/blkid        blkid's view, one line per partition
//   <disk>.files/<N>/...      the filesystem of partition N (ext2/3/4, NTFS), read in-process
//   <disk>.files/disk/...     the filesystem of a disk without a partition table
//   <disk>.files/<N>.<TYPE>   -> ../<disk>.parts/<N>: a filesystem not read here (xfs, LUKS...)
// Nothing is read until one of the two directories is listed or looked into: a mount of a
// hundred points probes only the disks that are browsed.
//
// Guest nodes' inode numbers are derived, not counted: the top bit, the filesystem's number in
// this mount, the guest's own inode number. Hard links share a number, as `cp -a` and `tar`
// expect, and a directory entry that loops back to an ancestor meets the ancestor's number,
// which the kernel refuses as a second alias instead of descending forever.
#pragma once

#include <memory>
#include <string>

#include "backupfs/node.h"
#include "common/thread_annotations.h"
#include "guest/partitions.h"

namespace backupfs {

// Adds <disk>.parts and <disk>.files beside the image node `image` in the point directory.
void AddGuestDirs(TreeShared* shared, Node* point, const std::shared_ptr<const Node>& image);

// One guest filesystem of one disk at one point, opened on first use.
class GuestVolume {
 public:
  GuestVolume(TreeShared* shared, std::string where, std::string type,
              std::shared_ptr<const ByteSource> device)
      : shared_(shared),
        id_(shared->next_volume.fetch_add(1)),
        where_(std::move(where)),
        type_(std::move(type)),
        device_(std::move(device)) {}

  // The filesystem, opened by the first call; an open that failed fails again (logged once).
  Result<GuestFs*> Fs() EXCLUDES(mu_);
  // The mount's inode number for the guest's inode `guest_ino`.
  Result<uint64_t> InoOf(uint64_t guest_ino) const;
  // "vda partition 2 (ext4) at virtnbdbackup.3", for messages.
  const std::string& where() const { return where_; }

 private:
  TreeShared* const shared_;
  const uint64_t id_;
  const std::string where_, type_;
  const std::shared_ptr<const ByteSource> device_;
  Mutex mu_;
  bool tried_ GUARDED_BY(mu_) = false;
  std::unique_ptr<GuestFs> fs_ GUARDED_BY(mu_);
  Status failed_ GUARDED_BY(mu_);
};

}  // namespace backupfs
