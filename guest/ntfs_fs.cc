// OpenNtfsFs: NTFS read in-process and read-only through libntfs-3g, showing what ntfs-3g
// itself shows on a read-only mount with default options (src/ntfs-3g.c getattr, readdir,
// readlink, listxattr), with these choices where a mount point or a user is involved:
//
// - Owner and mode: without a user mapping (.NTFS-3G/UserMapping) ntfs-3g shows every inode as
//   owned by the mounting user, with fmask = dmask = 0: files and directories 0777, symlinks
//   0777. We show uid = gid = 0 (the mounting user of the backup mount is root) and the same
//   0777 modes; Windows ACLs are not translated (ntfs-3g does not either, without a mapping).
// - nlink: the MFT record's link count for files and reparse points, 1 for directories (what
//   ntfs-3g shows without -o posix_nlink, "to make find(1) work").
// - Symlinks: Interix symlinks (what ntfs-3g's `ln -s` creates) read as stored. Reparse
//   points (Windows symlinks, junctions, WSL links) go through ntfs_make_symlink like
//   ntfs-3g's readlink; ntfs-3g prefixes absolute targets on this volume with its mount point,
//   which would lead out of the guest tree here, so an absolute result ("/Users/x", or
//   "/.NTFS-3G/D:/x" for another drive) is rewritten relative to the link's directory
//   ("../Users/x"). Unsupported reparse tags read "unsupported reparse tag 0x........", as
//   in ntfs-3g.
// - Named data streams: user.<stream> xattrs (ntfs-3g's default streams_interface=xattr on
//   Linux), nothing else.
//
// The pieces: ntfs_volume (the mount, its lock and libntfs-3g's log), ntfs_node (attributes,
// names, directories), ntfs_file (reads and holes), ntfs_links (symlink targets, xattrs).
// Threading: libntfs-3g is not thread-safe; every call on a volume runs under its Mutex.
#include "guest/guest_fs.h"
#include "guest/ntfs_file.h"
#include "guest/ntfs_links.h"
#include "guest/ntfs_node.h"
#include "guest/ntfs_volume.h"

namespace backupfs {
namespace {

using ntfs::InodePtr;
using ntfs::LogCapture;
using ntfs::Volume;

// Each call takes the volume's lock and a capture of libntfs-3g's log for its errors.
class NtfsFs final : public GuestFs {
 public:
  explicit NtfsFs(std::shared_ptr<Volume> vol) : vol_(std::move(vol)) {}
  const std::string& type() const override {
    static const std::string kType = "ntfs";
    return kType;
  }
  uint64_t root() const override { return FILE_root; }

  Result<GuestAttr> Stat(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    BFS_ASSIGN_OR_RETURN(InodePtr ni, vol_->OpenInode(ino, log));
    return ntfs::StatNode(*vol_, ni.get(), log);
  }

  Result<std::vector<GuestDirEntry>> ReadDir(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    return ntfs::ReadDirectory(*vol_, ino, log);
  }

  Result<std::string> ReadLink(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    return ntfs::LinkTarget(*vol_, ino, log);
  }

  Result<std::shared_ptr<const GuestFile>> Open(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    return ntfs::OpenFile(vol_, ino, log);
  }

  Result<std::vector<std::pair<std::string, std::string>>> Xattrs(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    return ntfs::StreamXattrs(*vol_, ino, log);
  }

  std::vector<std::string> Notes() const override {
    MutexLock l(vol_->mu);
    return vol_->notes;
  }

 private:
  const std::shared_ptr<Volume> vol_;
};

}  // namespace

Result<std::unique_ptr<GuestFs>> OpenNtfsFs(std::shared_ptr<const ByteSource> device) {
  BFS_ASSIGN_OR_RETURN(std::shared_ptr<Volume> vol, ntfs::MountVolume(std::move(device)));
  return std::unique_ptr<GuestFs>(std::make_unique<NtfsFs>(std::move(vol)));
}

}  // namespace backupfs
