#include "guest/ntfs_node.h"

#include <cstring>

#include "guest/ntfs_links.h"

namespace backupfs::ntfs {
namespace {

constexpr size_t kMaxDirEntries = 1 << 20;  // entries of one directory
constexpr size_t kMaxNameBytes = 1024;      // 255 UTF-16 units need at most 765

mode_t TypeOf(unsigned dt_type) {
  switch (dt_type) {
    case NTFS_DT_DIR:
      return S_IFDIR;
    case NTFS_DT_LNK:
      return S_IFLNK;
    case NTFS_DT_REPARSE:
      return S_IFLNK;
    case NTFS_DT_FIFO:
      return S_IFIFO;
    case NTFS_DT_SOCK:
      return S_IFSOCK;
    case NTFS_DT_BLK:
      return S_IFBLK;
    case NTFS_DT_CHR:
      return S_IFCHR;
    default:
      return S_IFREG;  // ntfs-3g shows unexpected types as plain files
  }
}

// --- Interix special files (what ntfs-3g creates for ln -s, mkfifo, mknod) ------------------

constexpr uint64_t kIntxSymlink = 0x014B4E4C78746E49ULL;  // "IntxLNK\1"
constexpr uint64_t kIntxChar = 0x0052484378746E49ULL;     // "IntxCHR\0"
constexpr uint64_t kIntxBlock = 0x004B4C4278746E49ULL;    // "IntxBLK\0"
constexpr size_t kIntxDeviceSize = 24;                    // magic, major, minor

uint64_t Le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// --- directory reading ------------------------------------------------------------------------

struct FillContext {
  std::vector<GuestDirEntry>* out;
  size_t seen = 0;
  bool too_many = false;
  bool bad_name = false;
  size_t skipped = 0;
};

int Fill(void* dirent, const ntfschar* name, const int name_len, const int name_type, const s64,
         const MFT_REF mref, const unsigned dt_type) {
  auto* ctx = static_cast<FillContext*>(dirent);
  if (name_type == FILE_NAME_DOS) return 0;  // the 8.3 alias of a long name
  if (++ctx->seen > kMaxDirEntries) {
    ctx->too_many = true;
    return -1;
  }
  auto utf8 = ToUtf8(name, name_len);
  if (!utf8.ok()) {
    ctx->bad_name = true;
    return -1;
  }
  std::string& s = utf8.value();
  if (s == "." || s == "..") return 0;
  if (s.empty() || s.size() > kMaxNameBytes || s.find('/') != std::string::npos ||
      s.find('\0') != std::string::npos) {
    ++ctx->skipped;
    return 0;
  }
  ctx->out->push_back(GuestDirEntry{std::move(s), MREF(mref), TypeOf(dt_type)});
  return 0;
}

}  // namespace

Result<std::string> ToUtf8(const ntfschar* name, int len) {
  char* out = nullptr;
  errno = 0;
  int n = ntfs_ucstombs(name, len, &out, 0);
  CPtr<char> owned(out);
  if (n < 0 || out == nullptr)
    return Status::Corruption(std::string("a name not in UTF-16: ") + strerror(errno));
  return std::string(out, n);
}

Status ToUtf8Into(const ntfschar* name, int len, std::string* out) {
  auto r = ToUtf8(name, len);
  if (!r.ok()) return r.status();
  out->swap(r.value());
  return Status::Ok();
}

Result<Interix> ReadInterix(Volume& v, ntfs_inode* ni, const LogCapture& log) {
  Interix out;
  AttrPtr na(ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0));
  if (!na) return out;
  if (!(ni->flags & FILE_ATTR_HIDDEN)) {
    if (na->data_size == 0) out.type = S_IFIFO;
    if (na->data_size == 1) out.type = S_IFSOCK;
  }
  if (na->data_size <= 8 || na->data_size > 8 + 2 * 4096) return out;
  BFS_ASSIGN_OR_RETURN(std::vector<uint8_t> data,
                       ReadSmall(v, na.get(), ni->mft_no, 8 + 2 * 4096, log));
  const uint64_t magic = Le64(data.data());
  if ((magic == kIntxChar || magic == kIntxBlock) && data.size() == kIntxDeviceSize) {
    out.type = magic == kIntxChar ? S_IFCHR : S_IFBLK;
    out.rdev = makedev(Le64(data.data() + 8), Le64(data.data() + 16));
  }
  if (magic == kIntxSymlink) {
    std::vector<ntfschar> units((data.size() - 8) / 2);
    std::memcpy(units.data(), data.data() + 8, units.size() * 2);
    auto target = ToUtf8(units.data(), static_cast<int>(units.size()));
    if (!target.ok())
      return target.status().WithPrefix(v.name() + ": MFT record " + std::to_string(ni->mft_no) +
                                        ": Interix symlink");
    out.type = S_IFLNK;
    out.target = std::move(target).value();
  }
  return out;
}

Result<GuestAttr> StatNode(Volume& v, ntfs_inode* ni, const LogCapture& log) {
  GuestAttr a;
  a.ino = ni->mft_no;
  a.nlink = le16_to_cpu(ni->mrec->link_count);
  a.atime = ntfs2timespec(ni->last_access_time);
  a.mtime = ntfs2timespec(ni->last_data_change_time);
  a.ctime = ntfs2timespec(ni->last_mft_change_time);
  if (IsReparse(ni)) {
    BFS_ASSIGN_OR_RETURN(std::string target, ReparseTarget(v, ni, log));
    a.mode = S_IFLNK | 0777;
    a.size = target.size();
    a.blocks = (ni->allocated_size + 511) >> 9;
  } else if (IsDir(ni)) {
    a.mode = S_IFDIR | 0777;
    a.nlink = 1;
    a.size = ni->data_size;
    a.blocks = ni->allocated_size >> 9;
    AttrPtr na(ntfs_attr_open(ni, AT_INDEX_ALLOCATION, NTFS_INDEX_I30, 4));
    if (na) {
      a.size = na->data_size;
      a.blocks = na->allocated_size >> 9;
    }
  } else {
    a.mode = S_IFREG | 0777;
    a.size = ni->data_size;
    a.blocks = (ni->allocated_size + 511) >> 9;
    if (ni->flags & FILE_ATTR_SYSTEM) {
      BFS_ASSIGN_OR_RETURN(Interix intx, ReadInterix(v, ni, log));
      a.mode = intx.type | 0777;
      a.rdev = intx.rdev;
      if (S_ISLNK(a.mode)) a.size = intx.target.size();
    }
  }
  return a;
}

Result<std::vector<GuestDirEntry>> ReadDirectory(Volume& v, uint64_t ino, const LogCapture& log) {
  BFS_ASSIGN_OR_RETURN(InodePtr ni, v.OpenInode(ino, log));
  if (!IsDir(ni.get()) || IsReparse(ni.get())) {
    return Status::InvalidArgument(v.name() + ": MFT record " + std::to_string(ino) +
                                   ": not a directory");
  }
  std::vector<GuestDirEntry> out;
  FillContext ctx{&out};
  s64 pos = 0;
  errno = 0;
  int rc = ntfs_readdir(ni.get(), &pos, &ctx, Fill);
  if (ctx.too_many) {
    return v.Error(ino, "more than " + std::to_string(kMaxDirEntries) + " directory entries", 0,
                   log);
  }
  if (ctx.bad_name) return v.Error(ino, "a directory entry whose name is not UTF-16", 0, log);
  if (rc != 0) return v.Error(ino, "cannot read the directory index", errno, log);
  if (ctx.skipped) {
    v.Note(v.name() + ": MFT record " + std::to_string(ino) + ": " + std::to_string(ctx.skipped) +
           " entries with unusable names not shown");
  }
  return out;
}

}  // namespace backupfs::ntfs
