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
// Threading: libntfs-3g is not thread-safe; every call on a volume runs under its Mutex.
// libntfs-3g's log goes to a thread-local buffer of the calling thread, appended to errors.
#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <mutex>

#include "common/thread_annotations.h"
#include "guest/guest_fs.h"
#include "guest/ntfs_device.h"

namespace backupfs {

namespace {

constexpr size_t kMaxDirEntries = 1 << 20;    // entries of one directory
constexpr size_t kMaxNameBytes = 1024;        // 255 UTF-16 units need at most 765
constexpr size_t kMaxLinkBytes = 4095;        // PATH_MAX - 1
constexpr size_t kMaxDepth = 4096;            // parents walked up from a reparse point
constexpr size_t kMaxStreams = 4096;          // named data streams of one inode
constexpr int64_t kMaxXattrValue = 64 << 10;  // XATTR_SIZE_MAX
constexpr size_t kMaxRuns = 1 << 20;          // runlist elements mapped for SEEK_HOLE
constexpr size_t kOpenAttrs = 16;             // data attributes kept open for reads
constexpr size_t kMaxLog = 2048;
constexpr uint64_t kWholeVolume = UINT64_MAX;  // an error of no one MFT record

// --- libntfs-3g's log, kept off stderr --------------------------------------------------------

thread_local std::string* tl_log = nullptr;

int LogToBuffer(const char*, const char*, int, u32, void*, const char* format, va_list args) {
  if (tl_log == nullptr || tl_log->size() >= kMaxLog) return 0;
  char line[512];
  vsnprintf(line, sizeof(line), format, args);
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (!tl_log->empty()) *tl_log += "; ";
  *tl_log += s;
  return 0;
}

void RouteLogOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    ntfs_log_set_handler(LogToBuffer);
    ntfs_log_clear_levels(UINT32_MAX);
    ntfs_log_set_levels(NTFS_LOG_LEVEL_WARNING | NTFS_LOG_LEVEL_ERROR | NTFS_LOG_LEVEL_PERROR |
                        NTFS_LOG_LEVEL_CRITICAL);
  });
}

// Collects what libntfs-3g logs on this thread while it lives.
class LogCapture {
 public:
  LogCapture() : prev_(tl_log) { tl_log = &text_; }
  ~LogCapture() { tl_log = prev_; }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::string* prev_;
};

// --- owners of libntfs-3g handles -------------------------------------------------------------

struct InodeClose {
  void operator()(ntfs_inode* ni) const { ntfs_inode_close(ni); }
};
struct AttrClose {
  void operator()(ntfs_attr* na) const { ntfs_attr_close(na); }
};
struct SearchCtxPut {
  void operator()(ntfs_attr_search_ctx* c) const { ntfs_attr_put_search_ctx(c); }
};
struct CFree {
  void operator()(void* p) const { free(p); }
};
using InodePtr = std::unique_ptr<ntfs_inode, InodeClose>;
using AttrPtr = std::unique_ptr<ntfs_attr, AttrClose>;
using SearchCtxPtr = std::unique_ptr<ntfs_attr_search_ctx, SearchCtxPut>;
template <typename T>
using CPtr = std::unique_ptr<T, CFree>;

// An inode and its unnamed data attribute, kept open between reads (na closes first).
struct OpenData {
  InodePtr ni;
  AttrPtr na;
  uint64_t ino = 0;
  uint64_t last_use = 0;
};

struct Hole {
  uint64_t begin, end;
};

// The mounted volume, shared by the filesystem and its open files.
class Volume {
 public:
  explicit Volume(std::shared_ptr<const ByteSource> source) { device_.source = std::move(source); }
  ~Volume() {
    MutexLock l(mu);
    open_.clear();
    if (vol != nullptr) ntfs_umount(vol, FALSE);  // frees the device too
  }
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;

  const std::string& name() const { return device_.source->name(); }
  NtfsDeviceState* device() { return &device_; }

  // "<source>: MFT record N: <what>: <errno text> (libntfs-3g: <log>)"; a failed read of the
  // source says what the source said.
  Status Error(uint64_t ino, const std::string& what, int err, const LogCapture& log) REQUIRES(mu) {
    std::string msg = name() + ": ";
    if (ino != kWholeVolume) msg += "MFT record " + std::to_string(ino) + ": ";
    msg += what;
    if (err == EIO && !device_.last_error.empty()) {
      msg += ": " + device_.last_error;
      device_.last_error.clear();
      return Status::IOError(msg);
    }
    if (err != 0) msg += std::string(": ") + strerror(err);
    if (!log.text().empty()) msg += " (libntfs-3g: " + log.text() + ")";
    return Status::Corruption(msg);
  }

  Result<InodePtr> OpenInode(uint64_t ino, const LogCapture& log) REQUIRES(mu) {
    if (ino > MFT_REF_MASK_CPU)
      return Status::NotFound(name() + ": no MFT record " + std::to_string(ino));
    errno = 0;
    InodePtr ni(ntfs_inode_open(vol, static_cast<MFT_REF>(ino)));
    if (!ni) return Error(ino, "cannot open the inode", errno, log);
    return ni;
  }

  // The open data attribute of `ino`, opened (and the least recently used one closed) if it
  // is not among the last kOpenAttrs.
  Result<ntfs_attr*> DataAttr(uint64_t ino, const LogCapture& log) REQUIRES(mu) {
    ++clock_;
    for (OpenData& d : open_) {
      if (d.ino == ino) {
        d.last_use = clock_;
        return d.na.get();
      }
    }
    BFS_ASSIGN_OR_RETURN(InodePtr ni, OpenInode(ino, log));
    errno = 0;
    AttrPtr na(ntfs_attr_open(ni.get(), AT_DATA, AT_UNNAMED, 0));
    if (!na) return Error(ino, "cannot open the data attribute", errno, log);
    if (open_.size() >= kOpenAttrs) {
      auto oldest = std::min_element(open_.begin(), open_.end(),
                                     [](auto& a, auto& b) { return a.last_use < b.last_use; });
      open_.erase(oldest);
    }
    open_.push_back(OpenData{std::move(ni), std::move(na), ino, clock_});
    return open_.back().na.get();
  }

  void Note(std::string note) REQUIRES(mu) {
    if (notes.size() < 64) notes.push_back(std::move(note));
  }

  Mutex mu;
  ntfs_volume* vol GUARDED_BY(mu) = nullptr;
  std::vector<std::string> notes GUARDED_BY(mu);

 private:
  NtfsDeviceState device_;  // outlives vol (destroyed after the destructor's body)
  std::deque<OpenData> open_ GUARDED_BY(mu);
  uint64_t clock_ GUARDED_BY(mu) = 0;
};

// --- conversions ------------------------------------------------------------------------------

Result<std::string> ToUtf8(const ntfschar* name, int len) {
  char* out = nullptr;
  errno = 0;
  int n = ntfs_ucstombs(name, len, &out, 0);
  CPtr<char> owned(out);
  if (n < 0 || out == nullptr)
    return Status::Corruption(std::string("a name not in UTF-16: ") + strerror(errno));
  return std::string(out, n);
}

// As ToUtf8, into *out (GCC 12 sees a Result<std::string> as maybe uninitialized in a loop).
Status ToUtf8Into(const ntfschar* name, int len, std::string* out) {
  auto r = ToUtf8(name, len);
  if (!r.ok()) return r.status();
  out->swap(r.value());
  return Status::Ok();
}

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

bool IsDir(const ntfs_inode* ni) { return (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) != 0; }
bool IsReparse(const ntfs_inode* ni) { return (ni->flags & FILE_ATTR_REPARSE_POINT) != 0; }

// The whole value of a small attribute (Interix files, xattrs), or an error.
Result<std::vector<uint8_t>> ReadSmall(Volume& v, ntfs_attr* na, uint64_t ino, int64_t limit,
                                       const LogCapture& log) REQUIRES(v.mu) {
  if (na->data_size < 0 || na->data_size > limit) {
    return Status::Corruption(v.name() + ": MFT record " + std::to_string(ino) + ": a value of " +
                              std::to_string(na->data_size) + " bytes (at most " +
                              std::to_string(limit) + " expected)");
  }
  std::vector<uint8_t> buf(na->data_size);
  errno = 0;
  if (!buf.empty() && ntfs_attr_pread(na, 0, na->data_size, buf.data()) != na->data_size) {
    return v.Error(ino, "cannot read the attribute", errno, log);
  }
  return buf;
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

struct Interix {
  mode_t type = S_IFREG;
  uint64_t rdev = 0;
  std::string target;  // S_IFLNK
};

// The type of a file with the system attribute, as ntfs-3g's getattr derives it.
Result<Interix> ReadInterix(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu) {
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

// --- reparse points ---------------------------------------------------------------------------

// The MFT record of the directory holding `ni`'s first name.
Result<uint64_t> ParentOf(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu) {
  SearchCtxPtr ctx(ntfs_attr_get_search_ctx(ni, nullptr));
  if (!ctx) return v.Error(ni->mft_no, "cannot search attributes", errno, log);
  if (ntfs_attr_lookup(AT_FILE_NAME, AT_UNNAMED, 0, CASE_SENSITIVE, 0, nullptr, 0, ctx.get()) ||
      ctx->attr->non_resident ||
      le32_to_cpu(ctx->attr->value_length) < offsetof(FILE_NAME_ATTR, file_name)) {
    return v.Error(ni->mft_no, "no usable $FILE_NAME attribute", errno, log);
  }
  auto* fn = reinterpret_cast<const FILE_NAME_ATTR*>(reinterpret_cast<const uint8_t*>(ctx->attr) +
                                                     le16_to_cpu(ctx->attr->value_offset));
  return static_cast<uint64_t>(MREF_LE(fn->parent_directory));
}

// How many directories lie between the root and the directory holding `ni`.
Result<size_t> DepthOf(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu) {
  BFS_ASSIGN_OR_RETURN(uint64_t parent, ParentOf(v, ni, log));
  for (size_t depth = 0; depth < kMaxDepth; ++depth) {
    if (parent == FILE_root) return depth;
    BFS_ASSIGN_OR_RETURN(InodePtr p, v.OpenInode(parent, log));
    BFS_ASSIGN_OR_RETURN(parent, ParentOf(v, p.get(), log));
  }
  return v.Error(
      ni->mft_no,
      "more than " + std::to_string(kMaxDepth) + " parent directories up to the root (a loop?)", 0,
      log);
}

// The target of a reparse point as ntfs-3g shows it (ntfs_make_symlink), with an absolute
// result made relative to the link's directory so that it stays inside the guest tree.
Result<std::string> ReparseTarget(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu) {
  errno = 0;
  CPtr<char> made(ntfs_make_symlink(ni, ""));
  std::string target;
  if (made) {
    target = made.get();
  } else if (errno == EOPNOTSUPP) {
    CPtr<REPARSE_POINT> rp(ntfs_get_reparse_point(ni));
    char text[64];
    snprintf(text, sizeof(text), "unsupported reparse tag 0x%08lx",
             rp ? static_cast<unsigned long>(le32_to_cpu(rp->reparse_tag)) : 0UL);
    return std::string(text);
  } else {
    return v.Error(ni->mft_no, "cannot read the reparse point", errno, log);
  }
  if (!target.empty() && target[0] == '/') {
    BFS_ASSIGN_OR_RETURN(size_t depth, DepthOf(v, ni, log));
    std::string rel;
    for (size_t i = 0; i < depth; ++i) rel += "../";
    rel += target.substr(target.find_first_not_of('/') == std::string::npos
                             ? target.size()
                             : target.find_first_not_of('/'));
    if (rel.empty()) rel = ".";
    target = std::move(rel);
  }
  if (target.size() > kMaxLinkBytes) {
    return v.Error(ni->mft_no, "a symlink target of " + std::to_string(target.size()) + " bytes", 0,
                   log);
  }
  return target;
}

// --- an open regular file ---------------------------------------------------------------------

// The holes of a non-resident attribute, from LCN_HOLE runs; for a compressed one only whole
// compression blocks (a compressed block is data followed by a hole in its runlist).
Result<std::vector<Hole>> HolesOf(Volume& v, ntfs_attr* na, uint64_t ino, const LogCapture& log)
    REQUIRES(v.mu) {
  std::vector<Hole> holes;
  if (!NAttrNonResident(na)) return holes;
  errno = 0;
  if (ntfs_attr_map_whole_runlist(na)) return v.Error(ino, "cannot map the runlist", errno, log);
  const uint64_t cluster = v.vol->cluster_size;
  const uint64_t size = static_cast<uint64_t>(na->data_size);
  const bool compressed = (na->data_flags & ATTR_COMPRESSION_MASK) != 0;
  const uint64_t unit = compressed && na->compression_block_size ? na->compression_block_size : 1;
  size_t n = 0;
  for (const runlist_element* rl = na->rl; rl && rl->length > 0; ++rl) {
    if (++n > kMaxRuns)
      return v.Error(ino, "a runlist of more than " + std::to_string(kMaxRuns) + " runs", 0, log);
    if (rl->lcn != LCN_HOLE || rl->vcn < 0) continue;
    uint64_t begin = static_cast<uint64_t>(rl->vcn) * cluster;
    uint64_t end = begin + static_cast<uint64_t>(rl->length) * cluster;
    begin = (begin + unit - 1) / unit * unit;
    end = std::min(end / unit * unit, size);
    if (begin >= end) continue;
    if (!holes.empty() && holes.back().end >= begin)
      holes.back().end = std::max(holes.back().end, end);
    else
      holes.push_back(Hole{begin, end});
  }
  return holes;
}

class NtfsFile final : public GuestFile {
 public:
  NtfsFile(std::shared_ptr<Volume> vol, uint64_t ino, uint64_t size, std::vector<Hole> holes)
      : vol_(std::move(vol)), ino_(ino), size_(size), holes_(std::move(holes)) {}
  uint64_t size() const override { return size_; }

  Status Read(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > size_ || out.size() > size_ - offset) {
      return Status::InvalidArgument(vol_->name() + ": MFT record " + std::to_string(ino_) +
                                     ": read past the end of the file");
    }
    LogCapture log;
    MutexLock l(vol_->mu);
    BFS_ASSIGN_OR_RETURN(ntfs_attr * na, vol_->DataAttr(ino_, log));
    size_t done = 0;
    while (done < out.size()) {
      errno = 0;
      s64 n = ntfs_attr_pread(na, offset + done, out.size() - done, out.data() + done);
      if (n <= 0) {
        return vol_->Error(ino_,
                           "cannot read " + std::to_string(out.size() - done) +
                               " bytes at offset " + std::to_string(offset + done),
                           errno, log);
      }
      done += n;
    }
    return Status::Ok();
  }

  uint64_t NextData(uint64_t offset) const override {
    for (const Hole& h : holes_) {
      if (offset < h.begin) return offset;
      if (offset < h.end) offset = h.end;
    }
    return std::min(offset, size_);
  }

  uint64_t NextHole(uint64_t offset) const override {
    for (const Hole& h : holes_) {
      if (offset < h.begin) return offset >= size_ ? size_ : h.begin;
      if (offset < h.end) return offset;
    }
    return size_;
  }

 private:
  const std::shared_ptr<Volume> vol_;
  const uint64_t ino_, size_;
  const std::vector<Hole> holes_;  // sorted, disjoint, within [0, size_)
};

// --- the filesystem ---------------------------------------------------------------------------

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
    GuestAttr a;
    a.ino = ni->mft_no;
    a.nlink = le16_to_cpu(ni->mrec->link_count);
    a.atime = ntfs2timespec(ni->last_access_time);
    a.mtime = ntfs2timespec(ni->last_data_change_time);
    a.ctime = ntfs2timespec(ni->last_mft_change_time);
    if (IsReparse(ni.get())) {
      BFS_ASSIGN_OR_RETURN(std::string target, ReparseTarget(*vol_, ni.get(), log));
      a.mode = S_IFLNK | 0777;
      a.size = target.size();
      a.blocks = (ni->allocated_size + 511) >> 9;
    } else if (IsDir(ni.get())) {
      a.mode = S_IFDIR | 0777;
      a.nlink = 1;
      a.size = ni->data_size;
      a.blocks = ni->allocated_size >> 9;
      AttrPtr na(ntfs_attr_open(ni.get(), AT_INDEX_ALLOCATION, NTFS_INDEX_I30, 4));
      if (na) {
        a.size = na->data_size;
        a.blocks = na->allocated_size >> 9;
      }
    } else {
      a.mode = S_IFREG | 0777;
      a.size = ni->data_size;
      a.blocks = (ni->allocated_size + 511) >> 9;
      if (ni->flags & FILE_ATTR_SYSTEM) {
        BFS_ASSIGN_OR_RETURN(Interix intx, ReadInterix(*vol_, ni.get(), log));
        a.mode = intx.type | 0777;
        a.rdev = intx.rdev;
        if (S_ISLNK(a.mode)) a.size = intx.target.size();
      }
    }
    return a;
  }

  Result<std::vector<GuestDirEntry>> ReadDir(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    BFS_ASSIGN_OR_RETURN(InodePtr ni, vol_->OpenInode(ino, log));
    if (!IsDir(ni.get()) || IsReparse(ni.get())) {
      return Status::InvalidArgument(vol_->name() + ": MFT record " + std::to_string(ino) +
                                     ": not a directory");
    }
    std::vector<GuestDirEntry> out;
    FillContext ctx{&out};
    s64 pos = 0;
    errno = 0;
    int rc = ntfs_readdir(ni.get(), &pos, &ctx, Fill);
    if (ctx.too_many) {
      return vol_->Error(ino, "more than " + std::to_string(kMaxDirEntries) + " directory entries",
                         0, log);
    }
    if (ctx.bad_name) return vol_->Error(ino, "a directory entry whose name is not UTF-16", 0, log);
    if (rc != 0) return vol_->Error(ino, "cannot read the directory index", errno, log);
    if (ctx.skipped) {
      vol_->Note(vol_->name() + ": MFT record " + std::to_string(ino) + ": " +
                 std::to_string(ctx.skipped) + " entries with unusable names not shown");
    }
    return out;
  }

  Result<std::string> ReadLink(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    BFS_ASSIGN_OR_RETURN(InodePtr ni, vol_->OpenInode(ino, log));
    if (IsReparse(ni.get())) return ReparseTarget(*vol_, ni.get(), log);
    if (!IsDir(ni.get()) && (ni->flags & FILE_ATTR_SYSTEM)) {
      BFS_ASSIGN_OR_RETURN(Interix intx, ReadInterix(*vol_, ni.get(), log));
      if (S_ISLNK(intx.type)) {
        if (intx.target.size() > kMaxLinkBytes) {
          return vol_->Error(
              ino, "a symlink target of " + std::to_string(intx.target.size()) + " bytes", 0, log);
        }
        return intx.target;
      }
    }
    return Status::InvalidArgument(vol_->name() + ": MFT record " + std::to_string(ino) +
                                   ": not a symlink");
  }

  Result<std::shared_ptr<const GuestFile>> Open(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    {
      BFS_ASSIGN_OR_RETURN(InodePtr ni, vol_->OpenInode(ino, log));
      if (IsDir(ni.get()) || IsReparse(ni.get())) {
        return Status::InvalidArgument(vol_->name() + ": MFT record " + std::to_string(ino) +
                                       ": not a regular file");
      }
    }
    BFS_ASSIGN_OR_RETURN(ntfs_attr * na, vol_->DataAttr(ino, log));
    BFS_ASSIGN_OR_RETURN(std::vector<Hole> holes, HolesOf(*vol_, na, ino, log));
    return std::shared_ptr<const GuestFile>(std::make_shared<NtfsFile>(
        vol_, ino, static_cast<uint64_t>(na->data_size), std::move(holes)));
  }

  Result<std::vector<std::pair<std::string, std::string>>> Xattrs(uint64_t ino) override {
    LogCapture log;
    MutexLock l(vol_->mu);
    BFS_ASSIGN_OR_RETURN(InodePtr ni, vol_->OpenInode(ino, log));
    std::vector<std::pair<std::string, std::string>> out;
    if (!UserXattrsAllowed(ni.get())) return out;
    BFS_ASSIGN_OR_RETURN(auto names, StreamNames(ni.get(), log));
    for (const std::vector<ntfschar>& name : names) {
      std::string utf8;
      Status converted = ToUtf8Into(name.data(), static_cast<int>(name.size()), &utf8);
      if (!converted.ok()) {
        return converted.WithPrefix(vol_->name() + ": MFT record " + std::to_string(ino) +
                                    ": data stream");
      }
      // ntfs-3g keeps its own attributes of other namespaces in streams named "ntfs-3g.*" and
      // hides them when longer than its prefix and NUL (strlen > sizeof "ntfs-3g.").
      if (utf8.size() > 9 && utf8.compare(0, 8, "ntfs-3g.") == 0) continue;
      AttrPtr na(
          ntfs_attr_open(ni.get(), AT_DATA, const_cast<ntfschar*>(name.data()), name.size()));
      if (!na) return vol_->Error(ino, "cannot open stream " + utf8, errno, log);
      if (na->data_size > kMaxXattrValue) {
        vol_->Note(vol_->name() + ": MFT record " + std::to_string(ino) + ": stream " + utf8 +
                   " of " + std::to_string(na->data_size) +
                   " bytes is too large for an xattr, not shown");
        continue;
      }
      BFS_ASSIGN_OR_RETURN(std::vector<uint8_t> value,
                           ReadSmall(*vol_, na.get(), ino, kMaxXattrValue, log));
      out.emplace_back("user." + utf8, std::string(value.begin(), value.end()));
    }
    return out;
  }

  std::vector<std::string> Notes() const override {
    MutexLock l(vol_->mu);
    return vol_->notes;
  }

 private:
  // As ntfs-3g's user_xattrs_allowed: regular files and directories (and the root).
  bool UserXattrsAllowed(ntfs_inode* ni) REQUIRES(vol_->mu) {
    if (!(ni->flags & (FILE_ATTR_SYSTEM | FILE_ATTR_REPARSE_POINT)) || ni->mft_no == FILE_root)
      return true;
    if (IsReparse(ni) || ni->mft_no < FILE_first_user) return false;
    const u32 t = ntfs_interix_types(ni);
    return t == NTFS_DT_REG || t == NTFS_DT_DIR;
  }

  Result<std::vector<std::vector<ntfschar>>> StreamNames(ntfs_inode* ni, const LogCapture& log)
      REQUIRES(vol_->mu) {
    SearchCtxPtr ctx(ntfs_attr_get_search_ctx(ni, nullptr));
    if (!ctx) return vol_->Error(ni->mft_no, "cannot search attributes", errno, log);
    std::vector<std::vector<ntfschar>> names;
    while (!ntfs_attr_lookup(AT_DATA, nullptr, 0, CASE_SENSITIVE, 0, nullptr, 0, ctx.get())) {
      const ATTR_RECORD* a = ctx->attr;
      if (a->name_length == 0) continue;
      if (names.size() >= kMaxStreams) {
        return vol_->Error(ni->mft_no, "more than " + std::to_string(kMaxStreams) + " data streams",
                           0, log);
      }
      auto* p = reinterpret_cast<const ntfschar*>(reinterpret_cast<const uint8_t*>(a) +
                                                  le16_to_cpu(a->name_offset));
      names.emplace_back(p, p + a->name_length);
    }
    if (errno != ENOENT) return vol_->Error(ni->mft_no, "cannot list the data streams", errno, log);
    return names;
  }

  const std::shared_ptr<Volume> vol_;
};

}  // namespace

Result<std::unique_ptr<GuestFs>> OpenNtfsFs(std::shared_ptr<const ByteSource> device) {
  RouteLogOnce();
  auto vol = std::make_shared<Volume>(std::move(device));
  LogCapture log;
  MutexLock l(vol->mu);
  NtfsDevicePtr dev = MakeNtfsDevice(vol->device());
  if (!dev) return Status::FromErrno(vol->name() + ": cannot allocate an ntfs device", errno);
  // Read-only: libntfs-3g then neither checks nor resets $LogFile nor refuses a hibernated
  // volume (ntfs-3g -o ro passes the same), so such a volume is shown as last written.
  errno = 0;
  vol->vol = ntfs_device_mount(dev.get(), NTFS_MNT_RDONLY);
  if (vol->vol == nullptr) {
    return vol->Error(kWholeVolume, "cannot mount as NTFS", errno, log);
  }
  dev.release();  // the volume owns it now: ntfs_umount frees it
  if (ntfs_set_shown_files(vol->vol, FALSE, TRUE, FALSE)) {
    return vol->Error(FILE_root, "cannot set the files shown", errno, log);
  }
  if (vol->vol->flags & VOLUME_IS_DIRTY) {
    vol->Note(vol->name() +
              ": NTFS volume marked dirty (not cleanly unmounted); shown as last "
              "written, $LogFile not replayed");
  }
  if (ntfs_volume_check_hiberfile(vol->vol, 0) < 0) {
    vol->Note(vol->name() +
              ": Windows is hibernated or fast-started on this NTFS volume; shown as "
              "last written, without what the hibernation file holds");
  }
  return std::unique_ptr<GuestFs>(std::make_unique<NtfsFs>(std::move(vol)));
}

}  // namespace backupfs
