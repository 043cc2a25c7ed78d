// OpenExtFs: an ext2/3/4 filesystem read through libext2fs over a ByteSource (ext_io.h), its
// journal replayed in memory when it needs recovery (jbd2_replay.h).
//
// Threading: libext2fs is not thread-safe, so every call on the ext2_filsys runs under mu_.
// File reads take no lock: an ExtFile (ext_file.h) reads the device source directly from the
// block map made at open. Lifetime: an ExtFile keeps its source alive (shared_ptr), so open
// files stay valid after the ExtFs is destroyed.
#include <ext2fs/ext2fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstddef>
#include <cstring>

#include "common/thread_annotations.h"
#include "guest/ext_file.h"
#include "guest/ext_io.h"
#include "guest/guest_fs.h"
#include "guest/jbd2_replay.h"

namespace backupfs {

namespace {

constexpr size_t kMaxDirEntries = 16 * 1024 * 1024;
constexpr size_t kMaxXattrs = 64 * 1024;
constexpr size_t kMaxXattrBytes = 64 * 1024 * 1024;
constexpr uint64_t kMaxLinkLength = 4095;

struct FsCloser {
  void operator()(ext2_filsys fs) const { ext2fs_close_free(&fs); }
};
using FsPtr = std::unique_ptr<struct_ext2_filsys, FsCloser>;

Result<ext2_super_block> ReadSuperblock(const ByteSource& device) {
  ext2_super_block sb;
  static_assert(sizeof(sb) == SUPERBLOCK_SIZE);
  if (device.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
    return Status::Corruption(device.name() + ": too small for an ext2/3/4 superblock (" +
                              std::to_string(device.size()) + " bytes)");
  }
  BFS_RETURN_IF_ERROR(
      device.ReadAt(SUPERBLOCK_OFFSET, {reinterpret_cast<uint8_t*>(&sb), SUPERBLOCK_SIZE}));
  if (sb.s_magic != EXT2_SUPER_MAGIC) {
    return Status::Corruption(device.name() + ": no ext2/3/4 superblock at offset 1024");
  }
  return sb;
}

// The names of incompat features libext2fs cannot read, as mke2fs spells them.
std::string IncompatNames(uint32_t features) {
  static const std::pair<uint32_t, const char*> kNames[] = {
      {EXT2_FEATURE_INCOMPAT_COMPRESSION, "compression"},
      {EXT3_FEATURE_INCOMPAT_JOURNAL_DEV, "journal_dev"},
      {EXT4_FEATURE_INCOMPAT_MMP, "mmp"},
      {EXT4_FEATURE_INCOMPAT_DIRDATA, "dirdata"},
  };
  std::string out;
  for (uint32_t bit = 1; bit != 0; bit <<= 1) {
    if (!(features & bit)) continue;
    std::string name = "FEATURE_I" + std::to_string(__builtin_ctz(bit));
    for (const auto& [b, n] : kNames) {
      if (b == bit) name = n;
    }
    out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

Status CheckFeatures(const ByteSource& device, const ext2_super_block& sb) {
  if (sb.s_feature_incompat & EXT3_FEATURE_INCOMPAT_JOURNAL_DEV) {
    return Status::FailedPrecondition(device.name() +
                                      ": an external ext3/4 journal device, not a filesystem");
  }
  uint32_t unsupported = sb.s_feature_incompat & ~EXT2_LIB_FEATURE_INCOMPAT_SUPP;
  if (unsupported) {
    return Status::FailedPrecondition(device.name() + ": ext filesystem with features " +
                                      IncompatNames(unsupported) + " that cannot be read");
  }
  return Status::Ok();
}

std::string TypeOf(const ext2_super_block& sb) {
  constexpr uint32_t kExt4Incompat = EXT3_FEATURE_INCOMPAT_EXTENTS | EXT4_FEATURE_INCOMPAT_64BIT |
                                     EXT4_FEATURE_INCOMPAT_FLEX_BG |
                                     EXT4_FEATURE_INCOMPAT_INLINE_DATA;
  constexpr uint32_t kExt4RoCompat =
      EXT4_FEATURE_RO_COMPAT_HUGE_FILE | EXT4_FEATURE_RO_COMPAT_GDT_CSUM |
      EXT4_FEATURE_RO_COMPAT_METADATA_CSUM | EXT4_FEATURE_RO_COMPAT_DIR_NLINK |
      EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE;
  if ((sb.s_feature_incompat & kExt4Incompat) || (sb.s_feature_ro_compat & kExt4RoCompat)) {
    return "ext4";
  }
  return (sb.s_feature_compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL) ? "ext3" : "ext2";
}

// `status` with the detail of the channel's last failed read, if there was one.
Status WithIoDetail(Status status, ExtIoTarget& target) {
  std::string detail = target.TakeLastError();
  if (status.ok() || detail.empty()) return status;
  return status.WithSuffix(" (" + detail + ")");
}

Result<FsPtr> OpenOver(const std::shared_ptr<ExtIoTarget>& target) {
  ExtIoRegistration registration(target);
  ext2_filsys fs = nullptr;
  errcode_t err = ext2fs_open2(registration.name().c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0,
                               ExtIoManager(), &fs);
  if (err) {
    return WithIoDetail(Status::Corruption(target->source().name() +
                                           ": cannot open as ext2/3/4: " + ExtErrorText(err)),
                        *target);
  }
  return FsPtr(fs);
}

mode_t ModeOfFileType(int file_type) {
  switch (file_type) {
    case EXT2_FT_REG_FILE:
      return S_IFREG;
    case EXT2_FT_DIR:
      return S_IFDIR;
    case EXT2_FT_CHRDEV:
      return S_IFCHR;
    case EXT2_FT_BLKDEV:
      return S_IFBLK;
    case EXT2_FT_FIFO:
      return S_IFIFO;
    case EXT2_FT_SOCK:
      return S_IFSOCK;
    case EXT2_FT_SYMLINK:
      return S_IFLNK;
    default:
      return 0;
  }
}

// Device numbers as the kernel's ext4 stores them: the old 8:8 encoding in i_block[0], else
// the new 12:20 one in i_block[1].
uint64_t DecodeRdev(const ext2_inode& inode) {
  uint32_t old_dev = inode.i_block[0];
  if (old_dev != 0) return makedev((old_dev >> 8) & 0xff, old_dev & 0xff);
  uint32_t dev = inode.i_block[1];
  return makedev((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00));
}

// A time from its 32-bit seconds and, when the inode holds it, its *_extra word (2 epoch bits,
// 30 bits of nanoseconds).
struct timespec DecodeTime(uint32_t seconds, const uint32_t* extra) {
  struct timespec t = {};
  t.tv_sec = static_cast<int32_t>(seconds);
  if (extra != nullptr) {
    t.tv_sec += static_cast<int64_t>(*extra & 3) << 32;
    t.tv_nsec = *extra >> 2;
    if (t.tv_nsec > 999999999) t.tv_nsec = 0;
  }
  return t;
}

// As the kernel decides (ext4_inode_is_fast_symlink): the target is in i_block when the inode
// owns no block but its xattr block. (libext2fs's test, by size alone, misreads an old slow
// symlink shorter than 60 bytes.)
bool IsFastSymlink(const ext2_inode_large& inode, uint32_t cluster_size) {
  uint64_t xattr_sectors = inode.i_file_acl != 0 ? cluster_size / 512 : 0;
  return inode.i_blocks == xattr_sectors;
}

class ExtFs final : public GuestFs {
 public:
  static Result<std::unique_ptr<GuestFs>> Open(std::shared_ptr<const ByteSource> device);
  ~ExtFs() override {
    MutexLock l(mu_);
    fs_.reset();
  }

  const std::string& type() const override { return type_; }
  uint64_t root() const override { return EXT2_ROOT_INO; }
  Result<GuestAttr> Stat(uint64_t ino) override EXCLUDES(mu_);
  Result<std::vector<GuestDirEntry>> ReadDir(uint64_t ino) override EXCLUDES(mu_);
  Result<std::string> ReadLink(uint64_t ino) override EXCLUDES(mu_);
  Result<std::shared_ptr<const GuestFile>> Open(uint64_t ino) override EXCLUDES(mu_);
  Result<std::vector<std::pair<std::string, std::string>>> Xattrs(uint64_t ino) override
      EXCLUDES(mu_);
  std::vector<std::string> Notes() const override { return notes_; }

 private:
  ExtFs(std::shared_ptr<const ByteSource> source, std::shared_ptr<ExtIoTarget> target, FsPtr fs,
        std::string type, std::vector<std::string> notes)
      : source_(std::move(source)),
        target_(std::move(target)),
        type_(std::move(type)),
        notes_(std::move(notes)),
        block_size_(fs->blocksize),
        cluster_size_(fs->blocksize << fs->cluster_ratio_bits),
        fs_(std::move(fs)) {}

  std::string InodeName(uint64_t ino) const {
    return source_->name() + " inode " + std::to_string(ino);
  }
  Status Error(uint64_t ino, const std::string& step, errcode_t err) {
    return WithIoDetail(Status::Corruption(InodeName(ino) + ": " + step + ": " + ExtErrorText(err)),
                        *target_);
  }
  Result<ext2_inode_large> ReadInode(uint64_t ino) REQUIRES(mu_);
  Status CheckNotEncrypted(uint64_t ino, const ext2_inode_large& inode) const;
  GuestAttr AttrOf(uint64_t ino, const ext2_inode_large& inode) REQUIRES(mu_);
  Result<std::string> ReadLinkTarget(uint64_t ino, ext2_inode_large& inode) REQUIRES(mu_);
  Result<std::vector<uint8_t>> ReadInline(uint64_t ino, ext2_inode_large& inode) REQUIRES(mu_);

  // What files read: the device, or the device with the replayed journal laid over it.
  const std::shared_ptr<const ByteSource> source_;
  const std::shared_ptr<ExtIoTarget> target_;  // the channel's view of source_
  const std::string type_;
  const std::vector<std::string> notes_;
  const uint32_t block_size_;
  const uint32_t cluster_size_;  // bigalloc: an xattr block takes a cluster
  Mutex mu_;
  FsPtr fs_ GUARDED_BY(mu_);
};

// ---- journal recovery ------------------------------------------------------------------------

// The device with the journal's committed transactions laid over it, or null when there is
// nothing to lay (clean, external journal, failed replay: each leaves a note).
Result<std::shared_ptr<const ByteSource>> Recover(ext2_filsys fs,
                                                  const std::shared_ptr<const ByteSource>& device,
                                                  std::vector<std::string>& notes) {
  const ext2_super_block& sb = *fs->super;
  const std::string& name = device->name();
  if (!(sb.s_feature_compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL) || sb.s_journal_inum == 0) {
    notes.push_back(name + ": needs journal recovery but its journal is external (device " +
                    std::to_string(sb.s_journal_dev) +
                    ", not part of this disk): the state shown is not recovered");
    return std::shared_ptr<const ByteSource>();
  }
  ext2_ino_t jino = sb.s_journal_inum;
  ext2_inode inode;
  errcode_t err = ext2fs_read_inode(fs, jino, &inode);
  if (err) {
    return Status::Corruption(name + ": cannot read journal inode " + std::to_string(jino) + ": " +
                              ExtErrorText(err));
  }
  auto runs = ReadExtBlockMap(fs, jino, &inode, name);
  if (!runs.ok()) return runs.status().WithPrefix("journal");
  auto journal_file =
      std::make_shared<ExtFile>(device, fs->blocksize, EXT2_I_SIZE(&inode), std::move(runs).value(),
                                name + " journal inode " + std::to_string(jino));
  GuestFileSource journal(journal_file, name + " journal (inode " + std::to_string(jino) + ")");
  auto replay = ReplayJournal(journal, fs->blocksize);
  if (!replay.ok()) {
    notes.push_back("journal not replayed (" + replay.status().message() +
                    "): the state shown is the unrecovered one");
    return std::shared_ptr<const ByteSource>();
  }
  std::map<uint64_t, std::vector<uint8_t>> blocks;
  uint64_t total = ext2fs_blocks_count(fs->super);
  uint64_t ignored = 0;
  for (auto& [block, bytes] : replay->blocks) {
    if (block >= total || bytes.size() != fs->blocksize) {
      ++ignored;
      continue;
    }
    blocks.emplace(block, std::move(bytes));
  }
  if (ignored != 0) {
    notes.push_back(std::to_string(ignored) +
                    " journalled blocks ignored: outside the filesystem or of the wrong size");
  }
  notes.push_back("journal replayed in memory: " + std::to_string(replay->transactions) +
                  " transactions, " + std::to_string(blocks.size()) + " blocks");
  // ReplayJournal's own notes say what it left out (a non-empty fast-commit area, say).
  for (std::string& n : replay->notes) notes.push_back(std::move(n));
  if (blocks.empty()) return std::shared_ptr<const ByteSource>();
  return std::shared_ptr<const ByteSource>(
      std::make_shared<BlockOverlaySource>(device, std::move(blocks), fs->blocksize));
}

Result<std::unique_ptr<GuestFs>> ExtFs::Open(std::shared_ptr<const ByteSource> device) {
  BFS_ASSIGN_OR_RETURN(ext2_super_block sb, ReadSuperblock(*device));
  BFS_RETURN_IF_ERROR(CheckFeatures(*device, sb));
  auto target = std::make_shared<ExtIoTarget>(device);
  BFS_ASSIGN_OR_RETURN(FsPtr fs, OpenOver(target));
  std::vector<std::string> notes;
  std::shared_ptr<const ByteSource> source = device;
  if (sb.s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER) {
    auto overlay = Recover(fs.get(), device, notes);
    if (!overlay.ok()) {
      notes.push_back(overlay.status().message() + ": the state shown is the unrecovered one");
    } else if (*overlay) {
      source = *overlay;
      auto replayed_target = std::make_shared<ExtIoTarget>(source);
      auto replayed = OpenOver(replayed_target);
      if (!replayed.ok()) return replayed.status().WithSuffix(" (after journal replay)");
      fs = std::move(replayed).value();
      target = std::move(replayed_target);
    }
  }
  return std::unique_ptr<GuestFs>(
      new ExtFs(source, std::move(target), std::move(fs), TypeOf(sb), std::move(notes)));
}

// ---- inodes ----------------------------------------------------------------------------------

Result<ext2_inode_large> ExtFs::ReadInode(uint64_t ino) {
  uint64_t count = fs_->super->s_inodes_count;
  if (ino < 1 || ino > count) {
    return Status::Corruption(InodeName(ino) + ": out of range (the filesystem has " +
                              std::to_string(count) + " inodes)");
  }
  ext2_inode_large inode;
  std::memset(&inode, 0, sizeof(inode));
  errcode_t err = ext2fs_read_inode_full(fs_.get(), static_cast<ext2_ino_t>(ino),
                                         reinterpret_cast<ext2_inode*>(&inode), sizeof(inode));
  if (err) return Error(ino, "cannot read", err);
  if (inode.i_links_count == 0 && ino != EXT2_ROOT_INO) {
    return Status::Corruption(InodeName(ino) + ": not in use (no links)");
  }
  return inode;
}

Status ExtFs::CheckNotEncrypted(uint64_t ino, const ext2_inode_large& inode) const {
  if (!(inode.i_flags & EXT4_ENCRYPT_FL)) return Status::Ok();
  return Status::FailedPrecondition(InodeName(ino) +
                                    ": encrypted (fscrypt); its names and contents are not shown");
}

GuestAttr ExtFs::AttrOf(uint64_t ino, const ext2_inode_large& inode) {
  const ext2_inode& small = *reinterpret_cast<const ext2_inode*>(&inode);
  GuestAttr a;
  a.ino = ino;
  a.mode = inode.i_mode;
  a.uid = inode_uid(inode);
  a.gid = inode_gid(inode);
  a.nlink = inode.i_links_count;
  a.size = EXT2_I_SIZE(&inode);
  a.blocks = inode.i_blocks;
  if (ext2fs_has_feature_huge_file(fs_->super)) {
    a.blocks |= static_cast<uint64_t>(inode.osd2.linux2.l_i_blocks_hi) << 32;
    if (inode.i_flags & EXT4_HUGE_FILE_FL) a.blocks *= block_size_ / 512;
  }
  // The kernel reports a regular file's inline data as sectors, so that tools do not take it
  // for a hole (ext4_file_getattr).
  if (S_ISREG(a.mode) && (inode.i_flags & EXT4_INLINE_DATA_FL)) a.blocks += (a.size + 511) >> 9;
  if (S_ISCHR(a.mode) || S_ISBLK(a.mode)) a.rdev = DecodeRdev(small);
  // The *_extra words exist when the inode is large and i_extra_isize covers them.
  const uint32_t inode_size = EXT2_INODE_SIZE(fs_->super);
  const uint32_t large_end = EXT2_GOOD_OLD_INODE_SIZE + uint32_t{inode.i_extra_isize};
  const uint32_t extra_end =
      inode_size > EXT2_GOOD_OLD_INODE_SIZE && large_end <= inode_size ? large_end : 0;
  auto extra = [&](const uint32_t& field) -> const uint32_t* {
    size_t end = reinterpret_cast<const char*>(&field) - reinterpret_cast<const char*>(&inode) + 4;
    return end <= extra_end ? &field : nullptr;
  };
  a.atime = DecodeTime(inode.i_atime, extra(inode.i_atime_extra));
  a.mtime = DecodeTime(inode.i_mtime, extra(inode.i_mtime_extra));
  a.ctime = DecodeTime(inode.i_ctime, extra(inode.i_ctime_extra));
  return a;
}

Result<GuestAttr> ExtFs::Stat(uint64_t ino) {
  MutexLock l(mu_);
  BFS_ASSIGN_OR_RETURN(ext2_inode_large inode, ReadInode(ino));
  return AttrOf(ino, inode);
}

// ---- directories -----------------------------------------------------------------------------

struct DirWalk {
  std::vector<GuestDirEntry> entries;
  Status error;
  std::string what;  // "vda1 inode 2"
  bool filetype = false;
  uint64_t blocks = 0, max_blocks = 0;
};

int OnDirEntry(ext2_ino_t, int entry, ext2_dir_entry* dirent, int offset, int, char*, void* priv) {
  auto* walk = static_cast<DirWalk*>(priv);
  if (offset == 0 && ++walk->blocks > walk->max_blocks) {
    walk->error = Status::Corruption(walk->what + ": directory has more blocks than its size");
    return DIRENT_ABORT;
  }
  if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || dirent->inode == 0) return 0;
  std::string name(dirent->name, ext2fs_dirent_name_len(dirent));
  if (name == "." || name == "..") return 0;
  if (name.empty() || name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
    walk->error =
        Status::Corruption(walk->what + ": invalid entry name at offset " + std::to_string(offset) +
                           " of directory block " + std::to_string(walk->blocks - 1));
    return DIRENT_ABORT;
  }
  if (walk->entries.size() >= kMaxDirEntries) {
    walk->error = Status::Corruption(walk->what + ": more than " + std::to_string(kMaxDirEntries) +
                                     " directory entries");
    return DIRENT_ABORT;
  }
  mode_t type = walk->filetype ? ModeOfFileType(ext2fs_dirent_file_type(dirent)) : 0;
  walk->entries.push_back(GuestDirEntry{std::move(name), dirent->inode, type});
  return 0;
}

Result<std::vector<GuestDirEntry>> ExtFs::ReadDir(uint64_t ino) {
  MutexLock l(mu_);
  BFS_ASSIGN_OR_RETURN(ext2_inode_large inode, ReadInode(ino));
  if (!S_ISDIR(inode.i_mode)) return Status::InvalidArgument(InodeName(ino) + ": not a directory");
  BFS_RETURN_IF_ERROR(CheckNotEncrypted(ino, inode));
  DirWalk walk;
  walk.what = InodeName(ino);
  walk.filetype = ext2fs_has_feature_filetype(fs_->super);
  // A directory block starts at offset 0; an inline directory comes as up to four such
  // pieces (".", "..", i_block and its xattr).
  walk.max_blocks = EXT2_I_SIZE(&inode) / block_size_ + 4;
  errcode_t err = ext2fs_dir_iterate2(fs_.get(), static_cast<ext2_ino_t>(ino),
                                      DIRENT_FLAG_INCLUDE_EMPTY, nullptr, OnDirEntry, &walk);
  if (!walk.error.ok()) return walk.error;
  if (err) return Error(ino, "cannot read directory", err);
  return std::move(walk.entries);
}

// ---- symlinks and files ----------------------------------------------------------------------

Result<std::vector<uint8_t>> ExtFs::ReadInline(uint64_t ino, ext2_inode_large& inode) {
  auto* small = reinterpret_cast<ext2_inode*>(&inode);
  size_t size = 0;
  errcode_t err = ext2fs_inline_data_size(fs_.get(), static_cast<ext2_ino_t>(ino), &size);
  if (err) return Error(ino, "cannot read its inline data", err);
  if (size > block_size_) {
    return Status::Corruption(InodeName(ino) + ": inline data of " + std::to_string(size) +
                              " bytes, more than a block");
  }
  std::vector<uint8_t> bytes(std::max<size_t>(size, 1));
  err = ext2fs_inline_data_get(fs_.get(), static_cast<ext2_ino_t>(ino), small, bytes.data(), &size);
  if (err) return Error(ino, "cannot read its inline data", err);
  bytes.resize(size);
  return bytes;
}

Result<std::string> ExtFs::ReadLinkTarget(uint64_t ino, ext2_inode_large& inode) {
  auto* small = reinterpret_cast<ext2_inode*>(&inode);
  const uint64_t size = EXT2_I_SIZE(small);
  if (size == 0 || size > kMaxLinkLength) {
    return Status::Corruption(InodeName(ino) + ": symlink of " + std::to_string(size) + " bytes");
  }
  std::vector<uint8_t> bytes;
  if (inode.i_flags & EXT4_INLINE_DATA_FL) {
    BFS_ASSIGN_OR_RETURN(bytes, ReadInline(ino, inode));
  } else if (IsFastSymlink(inode, cluster_size_)) {
    if (size >= sizeof(inode.i_block)) {
      return Status::Corruption(InodeName(ino) + ": fast symlink of " + std::to_string(size) +
                                " bytes, more than i_block holds");
    }
    const auto* p = reinterpret_cast<const uint8_t*>(inode.i_block);
    bytes.assign(p, p + size);
  } else {
    auto runs = ReadExtBlockMap(fs_.get(), static_cast<ext2_ino_t>(ino), small, source_->name());
    if (!runs.ok()) return WithIoDetail(runs.status(), *target_);
    if (runs->empty() || runs->front().logical != 0) {
      return Status::Corruption(InodeName(ino) + ": symlink without a data block");
    }
    bytes.resize(block_size_);
    errcode_t err = io_channel_read_blk64(fs_->io, runs->front().physical, 1, bytes.data());
    if (err) return Error(ino, "cannot read its symlink block", err);
  }
  if (bytes.size() < size) {
    return Status::Corruption(InodeName(ino) + ": symlink target shorter than its size");
  }
  std::string target(bytes.begin(), bytes.begin() + size);
  if (target.find('\0') != std::string::npos) {
    return Status::Corruption(InodeName(ino) + ": symlink target has a NUL byte");
  }
  return target;
}

Result<std::string> ExtFs::ReadLink(uint64_t ino) {
  MutexLock l(mu_);
  BFS_ASSIGN_OR_RETURN(ext2_inode_large inode, ReadInode(ino));
  if (!S_ISLNK(inode.i_mode)) return Status::InvalidArgument(InodeName(ino) + ": not a symlink");
  BFS_RETURN_IF_ERROR(CheckNotEncrypted(ino, inode));
  return ReadLinkTarget(ino, inode);
}

Result<std::shared_ptr<const GuestFile>> ExtFs::Open(uint64_t ino) {
  MutexLock l(mu_);
  BFS_ASSIGN_OR_RETURN(ext2_inode_large inode, ReadInode(ino));
  if (!S_ISREG(inode.i_mode)) {
    return Status::InvalidArgument(InodeName(ino) + ": not a regular file");
  }
  BFS_RETURN_IF_ERROR(CheckNotEncrypted(ino, inode));
  auto* small = reinterpret_cast<ext2_inode*>(&inode);
  const uint64_t size = EXT2_I_SIZE(small);
  // ext4 addresses at most 2^32 logical blocks.
  if (size > (uint64_t{1} << 32) * block_size_) {
    return Status::Corruption(InodeName(ino) + ": size " + std::to_string(size) +
                              " is past the largest ext4 file");
  }
  if (inode.i_flags & EXT4_INLINE_DATA_FL) {
    BFS_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadInline(ino, inode));
    if (size > block_size_) {
      return Status::Corruption(InodeName(ino) + ": inline file of " + std::to_string(size) +
                                " bytes");
    }
    bytes.resize(size);  // past the inline bytes: zeros, as the kernel reads them
    return std::shared_ptr<const GuestFile>(
        std::make_shared<ExtFile>(std::move(bytes), InodeName(ino)));
  }
  auto runs = ReadExtBlockMap(fs_.get(), static_cast<ext2_ino_t>(ino), small, source_->name());
  if (!runs.ok()) return WithIoDetail(runs.status(), *target_);
  return std::shared_ptr<const GuestFile>(std::make_shared<ExtFile>(
      source_, block_size_, size, std::move(runs).value(), InodeName(ino)));
}

// ---- extended attributes ---------------------------------------------------------------------

struct XattrWalk {
  std::vector<std::pair<std::string, std::string>> attrs;
  size_t bytes = 0;
  bool too_many = false;
};

int OnXattr(char* name, char* value, size_t value_len, void* priv) {
  auto* walk = static_cast<XattrWalk*>(priv);
  std::string key(name);
  if (key == "system.data") return 0;  // inline data's container: the kernel does not list it
  walk->bytes += key.size() + value_len;
  if (walk->attrs.size() >= kMaxXattrs || walk->bytes > kMaxXattrBytes) {
    walk->too_many = true;
    return XATTR_ABORT;
  }
  walk->attrs.emplace_back(std::move(key), std::string(value, value_len));
  return 0;
}

struct XattrCloser {
  void operator()(ext2_xattr_handle* h) const { ext2fs_xattrs_close(&h); }
};

Result<std::vector<std::pair<std::string, std::string>>> ExtFs::Xattrs(uint64_t ino) {
  MutexLock l(mu_);
  BFS_ASSIGN_OR_RETURN(ext2_inode_large inode, ReadInode(ino));
  (void)inode;
  ext2_xattr_handle* raw = nullptr;
  errcode_t err = ext2fs_xattrs_open(fs_.get(), static_cast<ext2_ino_t>(ino), &raw);
  if (err) return Error(ino, "cannot open its extended attributes", err);
  std::unique_ptr<ext2_xattr_handle, XattrCloser> handle(raw);
  err = ext2fs_xattrs_read(handle.get());
  if (err) return Error(ino, "cannot read its extended attributes", err);
  XattrWalk walk;
  err = ext2fs_xattrs_iterate(handle.get(), OnXattr, &walk);
  if (walk.too_many) {
    return Status::Corruption(InodeName(ino) + ": more extended attributes than " +
                              std::to_string(kMaxXattrs) + " or " + std::to_string(kMaxXattrBytes) +
                              " bytes");
  }
  if (err) return Error(ino, "cannot list its extended attributes", err);
  return std::move(walk.attrs);
}

}  // namespace

Result<std::unique_ptr<GuestFs>> OpenExtFs(std::shared_ptr<const ByteSource> device) {
  if (!device) return Status::InvalidArgument("OpenExtFs: no device");
  return ExtFs::Open(std::move(device));
}

}  // namespace backupfs
