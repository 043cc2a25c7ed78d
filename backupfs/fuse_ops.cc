#include "backupfs/fuse_ops.h"

#include "backupfs/guest_tree.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace backupfs {
namespace {

constexpr double kStableTimeout = 86400.0;  // a restore point's content never changes
constexpr double kLiveTimeout = 1.0;        // the root and savesets follow the disk

// What an open file holds: its image (and so its data files), the saveset file's descriptor,
// a partition's bytes, a generated file's node or a guest file. Owned through fi->fh from
// open to release.
struct OpenFile {
  std::shared_ptr<LazyImage> image;
  std::shared_ptr<const StoredFile> stored;
  std::shared_ptr<const ByteSource> bytes;
  std::shared_ptr<const Node> text;
  std::shared_ptr<const GuestFile> guest;
};

// A directory's entries as of opendir, so that offsets stay valid while it changes.
struct OpenDirectory {
  std::vector<LiveTree::Entry> entries;
};

OpenFile& FileOf(fuse_file_info* fi) { return *reinterpret_cast<OpenFile*>(fi->fh); }

FuseContext& Ctx(fuse_req_t req) {
  FuseContext& ctx = *static_cast<FuseContext*>(fuse_req_userdata(req));
  if (ctx.after_init) {
    try {
      std::call_once(ctx.after_init_once, ctx.after_init);
    } catch (...) {
      // Best effort (the readahead): never let it fail a request or escape into libfuse.
    }
  }
  return ctx;
}

int ToErrno(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk:
      return 0;
    case StatusCode::kNotFound:
      return ENOENT;
    case StatusCode::kInvalidArgument:
      return EINVAL;
    default:
      return EIO;
  }
}

mode_t ModeOf(const FuseContext& ctx, NodeKind kind, mode_t type = 0) {
  if (type != 0) return type;  // a guest entry whose directory tells its type
  switch (kind) {
    case NodeKind::kDir:
      return S_IFDIR | (0777 & ~ctx.umask & ~0222);
    case NodeKind::kSymlink:
      return S_IFLNK | 0777;
    default:
      return S_IFREG | (0666 & ~ctx.umask & ~0222);
  }
}

// A guest file's attributes as its filesystem stores them.
struct stat GuestStat(const Node& n) {
  const GuestAttr& a = n.guest->attr;
  struct stat st = {};
  st.st_ino = n.ino;
  st.st_mode = a.mode;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_nlink = static_cast<nlink_t>(a.nlink);
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_rdev = static_cast<dev_t>(a.rdev);
  st.st_blksize = 4096;
  st.st_atim = a.atime;
  st.st_mtim = a.mtime;
  st.st_ctim = a.ctime;
  return st;
}

struct stat Attr(const FuseContext& ctx, const Node& n) {
  if (n.guest) return GuestStat(n);
  struct stat st = {};
  st.st_ino = n.ino;
  st.st_uid = ctx.uid;
  st.st_gid = ctx.gid;
  st.st_mtim = st.st_ctim = st.st_atim = ctx.tree->Mtime(n);
  st.st_blksize = 1 << 20;
  st.st_mode = ModeOf(ctx, n.kind);
  st.st_nlink = n.kind == NodeKind::kDir ? 2 : 1;
  st.st_size = static_cast<off_t>(n.size);
  st.st_blocks = static_cast<blkcnt_t>((n.size + 511) / 512);
  return st;
}

double AttrTimeout(const Node& n) { return n.backing ? kLiveTimeout : kStableTimeout; }

// Runs an operation body, turning an escaped exception into EIO (never a crashed daemon).
template <typename F>
void Guard(fuse_req_t req, F&& body) {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    if (Ctx(req).log_error) Ctx(req).log_error(std::string("internal error: ") + e.what());
    fuse_reply_err(req, EIO);
  }
}

// A lazy directory or a guest file that could not be read: logged, EIO.
void ReplyError(fuse_req_t req, const Status& s) {
  FuseContext& ctx = Ctx(req);
  ++ctx.read_errors;
  if (ctx.log_error) ctx.log_error(s.message());
  fuse_reply_err(req, ToErrno(s));
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] {
    FuseContext& ctx = Ctx(req);
    std::shared_ptr<const Node> dir = ctx.tree->Get(parent);
    if (!dir) return (void)fuse_reply_err(req, ENOENT);
    const double entry_timeout = dir->backing ? kLiveTimeout : kStableTimeout;
    Status error;
    std::shared_ptr<const Node> n = ctx.tree->Lookup(parent, name, &error);
    if (!error.ok()) return ReplyError(req, error);
    fuse_entry_param e = {};
    e.entry_timeout = entry_timeout;  // negative entries are cached too
    if (n) {
      e.ino = n->ino;
      e.attr = Attr(ctx, *n);
      e.attr_timeout = AttrTimeout(*n);
    }
    if (fuse_reply_entry(req, &e) != 0 && n) ctx.tree->Forget(n->ino, 1);
  });
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Ctx(req).tree->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Ctx(req).tree->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, [&] {
    std::shared_ptr<const Node> n = Ctx(req).tree->Get(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    struct stat st = Attr(Ctx(req), *n);
    fuse_reply_attr(req, &st, AttrTimeout(*n));
  });
}

void ReadLink(fuse_req_t req, fuse_ino_t ino) {
  std::shared_ptr<const Node> n = Ctx(req).tree->Get(ino);
  if (!n || n->kind != NodeKind::kSymlink) return (void)fuse_reply_err(req, EINVAL);
  fuse_reply_readlink(req, n->target.c_str());
}

void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    std::shared_ptr<const Node> n = Ctx(req).tree->Get(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    if (n->kind != NodeKind::kDir) return (void)fuse_reply_err(req, ENOTDIR);
    auto dir = std::make_unique<OpenDirectory>();
    Status error;
    dir->entries = Ctx(req).tree->List(*n, &error);
    if (!error.ok()) return ReplyError(req, error);
    fi->keep_cache = fi->cache_readdir = n->backing ? 0 : 1;
    fi->fh = Ctx(req).handles.Add(std::move(dir));
    if (fuse_reply_open(req, fi) != 0) Ctx(req).handles.Remove(fi->fh);
  });
}

void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Ctx(req).handles.Remove(fi->fh);
  fuse_reply_err(req, 0);
}

void ReadDir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, [&] {
    FuseContext& ctx = Ctx(req);
    const std::vector<LiveTree::Entry>& entries = reinterpret_cast<OpenDirectory*>(fi->fh)->entries;
    std::vector<char> buf(size);
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < entries.size(); ++i) {
      struct stat st = {};
      st.st_ino = entries[i].ino;
      st.st_mode = ModeOf(ctx, entries[i].kind, entries[i].type);
      size_t n = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].name.c_str(),
                                   &st, static_cast<off_t>(i + 1));
      if (n > size - used) break;
      used += n;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

// READDIRPLUS: the entries with their attributes, each counted as a lookup, so that `tar`,
// `ls -l` and `cp -a` over a guest tree cost one request per directory block instead of one
// per file. Directories that follow the disk answer without attributes (a node id of 0: the
// kernel looks such entries up itself, as with READDIR), and so do entries that fail to load
// (the kernel's LOOKUP then reports the error).
void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, [&] {
    FuseContext& ctx = Ctx(req);
    const std::vector<LiveTree::Entry>& entries = reinterpret_cast<OpenDirectory*>(fi->fh)->entries;
    std::shared_ptr<const Node> dir = ctx.tree->Get(ino);
    const bool with_attrs = dir && !dir->backing;
    std::vector<char> buf(size);
    std::vector<uint64_t> counted;
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < entries.size(); ++i) {
      const LiveTree::Entry& entry = entries[i];
      fuse_entry_param e = {};
      e.attr.st_ino = entry.ino;
      e.attr.st_mode = ModeOf(ctx, entry.kind, entry.type);
      std::shared_ptr<const Node> n;
      // The kernel takes no reference for "." and "..": they must not be counted.
      if (with_attrs && entry.name != "." && entry.name != "..") {
        n = ctx.tree->Lookup(ino, entry.name);
      }
      if (n) {
        e.ino = n->ino;
        e.attr = Attr(ctx, *n);
        e.attr_timeout = AttrTimeout(*n);
        e.entry_timeout = kStableTimeout;
      }
      size_t need = fuse_add_direntry_plus(req, buf.data() + used, size - used, entry.name.c_str(),
                                           &e, static_cast<off_t>(i + 1));
      if (need > size - used) {
        if (n) ctx.tree->Forget(n->ino, 1);
        break;
      }
      if (n) counted.push_back(n->ino);
      used += need;
    }
    if (fuse_reply_buf(req, buf.data(), used) != 0) {
      for (uint64_t counted_ino : counted) ctx.tree->Forget(counted_ino, 1);
    }
  });
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    std::shared_ptr<const Node> n = Ctx(req).tree->Get(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    if (n->kind == NodeKind::kDir) return (void)fuse_reply_err(req, EISDIR);
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
    auto file = std::make_unique<OpenFile>();
    if (n->kind == NodeKind::kImage) {
      auto image = n->saveset->Image(n->point, n->disk, n->key);
      // A point that went or changed since the kernel looked it up: ESTALE makes the kernel
      // walk the path again with fresh lookups (LOOKUP_REVAL), which find the new node or none.
      if (!image.ok() && image.status().code() == StatusCode::kNotFound) {
        return (void)fuse_reply_err(req, ESTALE);
      }
      if (!image.ok()) return (void)fuse_reply_err(req, ToErrno(image.status()));
      file->image = std::move(image).value();
    } else if (n->kind == NodeKind::kFile) {
      Result<std::unique_ptr<StoredFile>> stored = n->store->Open(n->source);
      if (!stored.ok()) return ReplyError(req, stored.status());
      file->stored = std::move(stored).value();
    } else if (n->kind == NodeKind::kPartition) {
      file->bytes = n->bytes;
    } else if (n->kind == NodeKind::kText) {
      file->text = n;
    } else if (n->kind == NodeKind::kGuest) {
      // Device nodes, fifos and sockets are shown, never read (the mount is nodev besides).
      if (!S_ISREG(n->guest->attr.mode)) return (void)fuse_reply_err(req, EACCES);
      Result<GuestFs*> fs = n->guest->volume->Fs();
      if (!fs.ok()) return ReplyError(req, fs.status());
      Result<std::shared_ptr<const GuestFile>> guest = (*fs)->Open(n->guest->attr.ino);
      if (!guest.ok()) return ReplyError(req, guest.status());
      file->guest = std::move(guest).value();
    }
    fi->keep_cache = 1;  // a node's content never changes: keep the kernel's page cache
    fi->fh = Ctx(req).handles.Add(std::move(file));
    if (fuse_reply_open(req, fi) != 0) Ctx(req).handles.Remove(fi->fh);
  });
}

void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Ctx(req).handles.Remove(fi->fh);
  fuse_reply_err(req, 0);
}

// Replies with file descriptors and zeros, no copy through this process (splice where the
// kernel allows it).
void ReplyRaw(fuse_req_t req, const std::vector<DiskImage::RawPiece>& pieces) {
  static const std::vector<char> zeros(1 << 20);
  std::vector<fuse_buf> bufs;
  for (const auto& p : pieces) {
    for (uint64_t done = 0; done < p.length;) {
      fuse_buf b = {};
      b.size = static_cast<size_t>(p.fd >= 0 ? p.length
                                             : std::min<uint64_t>(p.length - done, zeros.size()));
      if (p.fd >= 0) {
        b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
        b.fd = p.fd;
        b.pos = static_cast<off_t>(p.file_offset);
      } else {
        b.mem = const_cast<char*>(zeros.data());
      }
      bufs.push_back(b);
      done += b.size;
    }
  }
  // fuse_bufvec ends in a one-element array: allocate room for all of them.
  std::vector<char> storage(sizeof(fuse_bufvec) + bufs.size() * sizeof(fuse_buf));
  auto* bv = reinterpret_cast<fuse_bufvec*>(storage.data());
  bv->count = bufs.size();
  bv->idx = 0;
  bv->off = 0;
  std::copy(bufs.begin(), bufs.end(), bv->buf);
  fuse_reply_data(req, bv, FUSE_BUF_SPLICE_MOVE);
}

void ReadImage(fuse_req_t req, const LazyImage& lazy, size_t size, off_t off) {
  FuseContext& ctx = Ctx(req);
  const uint64_t offset = static_cast<uint64_t>(off);
  if (offset >= lazy.size()) return (void)fuse_reply_buf(req, nullptr, 0);
  size = static_cast<size_t>(std::min<uint64_t>(size, lazy.size() - offset));
  thread_local std::vector<DiskImage::RawPiece> pieces;
  const DiskImage& image = lazy.Get();
  if (ctx.splice && image.RawPieces(offset, size, &pieces)) return ReplyRaw(req, pieces);
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < size) buf.resize(size);
  Status s = image.Read(offset, std::span(buf).first(size));
  if (!s.ok()) {
    ++ctx.read_errors;
    if (ctx.log_error) ctx.log_error(s.message());
    return (void)fuse_reply_err(req, ToErrno(s));
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), size);
}

Status ReadOf(const ByteSource& s, uint64_t offset, std::span<uint8_t> out) {
  return s.ReadAt(offset, out);
}
Status ReadOf(const GuestFile& f, uint64_t offset, std::span<uint8_t> out) {
  return f.Read(offset, out);
}

// A read of a partition or a guest file.
template <typename Source>
void ReadFrom(fuse_req_t req, const Source& source, size_t size, off_t off) {
  const uint64_t offset = static_cast<uint64_t>(off);
  if (offset >= source.size()) return (void)fuse_reply_buf(req, nullptr, 0);
  size = static_cast<size_t>(std::min<uint64_t>(size, source.size() - offset));
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < size) buf.resize(size);
  Status s = ReadOf(source, offset, std::span(buf).first(size));
  if (!s.ok()) return ReplyError(req, s);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), size);
}

void ReadText(fuse_req_t req, const std::string& text, size_t size, off_t off) {
  const size_t offset = static_cast<size_t>(off);
  if (offset >= text.size()) return (void)fuse_reply_buf(req, nullptr, 0);
  fuse_reply_buf(req, text.data() + offset, std::min(size, text.size() - offset));
}

void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, [&] {
    const OpenFile& file = FileOf(fi);
    if (file.image) return ReadImage(req, *file.image, size, off);
    if (file.bytes) return ReadFrom(req, *file.bytes, size, off);
    if (file.guest) return ReadFrom(req, *file.guest, size, off);
    if (file.text) return ReadText(req, file.text->text, size, off);
    if (file.stored->fd() < 0) return ReadFrom(req, *file.stored, size, off);
    fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
    bv.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    bv.buf[0].fd = file.stored->fd();
    bv.buf[0].pos = off;
    fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
  });
}

// SEEK_DATA (`data`) or SEEK_HOLE from `offset` in what the open file reads. A file that
// knows of no holes (a saveset file, a listing) is data up to its end.
uint64_t NextOf(const OpenFile& file, bool data, uint64_t offset, uint64_t size) {
  if (file.image) {
    const DiskImage& image = file.image->Get();
    return data ? image.NextData(offset) : image.NextHole(offset);
  }
  if (file.bytes) return data ? file.bytes->NextData(offset) : file.bytes->NextHole(offset);
  if (file.guest) return data ? file.guest->NextData(offset) : file.guest->NextHole(offset);
  return data ? offset : size;
}

void Lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  Guard(req, [&] {
    std::shared_ptr<const Node> n = Ctx(req).tree->Get(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    const OpenFile& file = FileOf(fi);
    const uint64_t size = file.image ? file.image->size() : n->size;
    const uint64_t offset = static_cast<uint64_t>(off);
    if (off < 0 || offset >= size) return (void)fuse_reply_err(req, ENXIO);
    if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
    const uint64_t result = NextOf(file, whence == SEEK_DATA, offset, size);
    if (whence == SEEK_DATA && result >= size) return (void)fuse_reply_err(req, ENXIO);
    fuse_reply_lseek(req, static_cast<off_t>(result));
  });
}

// A node's extended attributes: a guest file's as stored, a partition's from blkid.
Result<std::vector<std::pair<std::string, std::string>>> XattrsOf(const Node& n) {
  if (n.guest) {
    BFS_ASSIGN_OR_RETURN(GuestFs * fs, n.guest->volume->Fs());
    return fs->Xattrs(n.guest->attr.ino);
  }
  return std::vector<std::pair<std::string, std::string>>(n.xattrs.begin(), n.xattrs.end());
}

// `size` 0 asks how long the answer is; a smaller buffer than the answer is ERANGE.
void ReplySized(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) return (void)fuse_reply_xattr(req, value.size());
  if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value.data(), value.size());
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guard(req, [&] {
    std::shared_ptr<const Node> n = Ctx(req).tree->Get(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    auto xattrs = XattrsOf(*n);
    if (!xattrs.ok()) return ReplyError(req, xattrs.status());
    for (const auto& [key, value] : *xattrs) {
      if (key == name) return ReplySized(req, value, size);
    }
    fuse_reply_err(req, ENODATA);
  });
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guard(req, [&] {
    std::shared_ptr<const Node> n = Ctx(req).tree->Get(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    auto xattrs = XattrsOf(*n);
    if (!xattrs.ok()) return ReplyError(req, xattrs.status());
    std::string names;
    for (const auto& [key, value] : *xattrs) names.append(key).push_back('\0');
    ReplySized(req, names, size);
  });
}

void StatFs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st = {};
  st.f_bsize = st.f_frsize = 4096;
  st.f_files = Ctx(req).tree->held();
  st.f_namemax = 255;
  st.f_flag = ST_RDONLY;
  fuse_reply_statfs(req, &st);
}

void Init(void*, fuse_conn_info* conn) {
  // Reads as large as the kernel allows (1 MiB with max_pages); splice for plain files.
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
  // A node's target never changes (a moved `latest` is a new node): the kernel may keep it.
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

}  // namespace

const fuse_lowlevel_ops& BackupfsOps() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o = {};
    o.init = Init;
    o.lookup = Lookup;
    o.forget = Forget;
    o.forget_multi = ForgetMulti;
    o.getattr = GetAttr;
    o.readlink = ReadLink;
    o.opendir = OpenDir;
    o.readdir = ReadDir;
    o.readdirplus = ReadDirPlus;
    o.releasedir = ReleaseDir;
    o.open = Open;
    o.release = Release;
    o.read = Read;
    o.lseek = Lseek;
    o.statfs = StatFs;
    o.getxattr = GetXattr;
    o.listxattr = ListXattr;
    return o;
  }();
  return ops;
}

}  // namespace backupfs
