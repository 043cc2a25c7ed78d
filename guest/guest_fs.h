// A guest filesystem read in-process and read-only: ext2/3/4 (libext2fs, ext_fs.cc) and NTFS
// (libntfs-3g, ntfs_fs.cc), over a ByteSource. Nothing here knows of FUSE: the mount shows
// these trees (backupfs/guest_tree.h), and tests and fuzzers call them directly.
//
// What a GuestFs shows is what the guest would see: ownership, modes, sizes and times as
// stored, hard links as one inode, symlink targets as stored (never followed here), sparse
// files with their holes, and, for a crash-consistent image, the state after journal recovery
// done in memory (jbd2_replay.h), never written anywhere.
//
// Every method is thread-safe. Errors name the filesystem (its source's name), the inode and
// what was wrong; a hostile image yields errors, never a crash, a hang or bytes from outside
// its source.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "guest/byte_source.h"
#include "stream/status.h"

namespace backupfs {

struct GuestAttr {
  uint64_t ino = 0;
  mode_t mode = 0;  // S_IFMT type and permission bits (suid, sgid, sticky included)
  uint32_t uid = 0, gid = 0;
  uint64_t nlink = 1;
  uint64_t size = 0;    // bytes; directories as stored too
  uint64_t blocks = 0;  // 512-byte units allocated
  uint64_t rdev = 0;    // device nodes: makedev(major, minor)
  struct timespec atime = {}, mtime = {}, ctime = {};
};

struct GuestDirEntry {
  std::string name;  // never "." or ".."; never empty, never with '/'
  uint64_t ino = 0;
  mode_t type = 0;  // S_IFMT bits, 0 when the directory does not say (Stat tells)
};

// An open regular file. Reads are thread-safe and, where the format allows, take no lock of
// the filesystem (the block map is read once, at open).
class GuestFile {
 public:
  virtual ~GuestFile() = default;
  virtual uint64_t size() const = 0;
  // Exactly out.size() bytes at offset (the caller clips to size()); holes read as zeros.
  virtual Status Read(uint64_t offset, std::span<uint8_t> out) const = 0;
  // SEEK_DATA / SEEK_HOLE within [0, size()): NextData returns size() when no data follows,
  // NextHole returns size() when only data follows.
  virtual uint64_t NextData(uint64_t offset) const = 0;
  virtual uint64_t NextHole(uint64_t offset) const = 0;
};

class GuestFs {
 public:
  virtual ~GuestFs() = default;
  // "ext4", "ntfs"
  virtual const std::string& type() const = 0;
  virtual uint64_t root() const = 0;
  virtual Result<GuestAttr> Stat(uint64_t ino) = 0;
  // The entries of directory `ino`, without "." and "..", in the directory's order.
  virtual Result<std::vector<GuestDirEntry>> ReadDir(uint64_t ino) = 0;
  virtual Result<std::string> ReadLink(uint64_t ino) = 0;
  virtual Result<std::shared_ptr<const GuestFile>> Open(uint64_t ino) = 0;
  // Extended attributes as the kernel names them ("user.x", "security.selinux",
  // "system.posix_acl_access", "trusted.x"), with their values.
  virtual Result<std::vector<std::pair<std::string, std::string>>> Xattrs(uint64_t ino) = 0;
  // What was done to show a consistent state, or could not be done, for the mount log
  // ("journal replayed in memory: 3 transactions, 41 blocks").
  virtual std::vector<std::string> Notes() const = 0;
};

// An ext2/3/4 filesystem (its journal replayed in memory when it needs recovery).
Result<std::unique_ptr<GuestFs>> OpenExtFs(std::shared_ptr<const ByteSource> device);
// An NTFS filesystem, mounted read-only by libntfs-3g.
Result<std::unique_ptr<GuestFs>> OpenNtfsFs(std::shared_ptr<const ByteSource> device);

// The reader for blkid's TYPE (ext2, ext3, ext4, ntfs), or kFailedPrecondition naming the
// type when there is none ("xfs: not readable in the mount; use the partition file").
Result<std::unique_ptr<GuestFs>> OpenGuestFs(const std::string& blkid_type,
                                             std::shared_ptr<const ByteSource> device);
bool GuestFsReadable(const std::string& blkid_type);

}  // namespace backupfs
