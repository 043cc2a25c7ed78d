// passthrough_fuse: the FUSE ceiling for bench/run-mount-bench.sh. A minimal low-level libfuse
// filesystem whose root holds ONE read-only file that passes reads through to SOURCE_FILE:
//   passthrough_fuse [-o splice|pread] [-o name=NAME] [-f] [-d] [-s] SOURCE_FILE MOUNTPOINT
// splice (default): fuse_reply_data of an fd buffer (the kernel moves page-cache pages);
// pread: pread into a per-thread buffer and fuse_reply_buf (one copy, as backupfs does).
// Same settings as backupfs where they matter: keep_cache, 1 MiB reads (libfuse's default
// max_write/max_pages), 86400 s attr/entry timeouts, multithreaded loop. It does NOT touch the
// mount's readahead: the benchmark sets it through sysfs, the same for every filesystem.
#define FUSE_USE_VERSION 314
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr double kTimeout = 86400.0;  // as backupfs: nothing here ever changes
constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
constexpr fuse_ino_t kFileIno = 2;

struct Options {
  char* source = nullptr;
  char* name = nullptr;
  int pread = 0;
};

// Set once in main() before the session starts; read-only afterwards (no locking needed).
struct Source {
  int fd = -1;
  struct stat st = {};
  std::string name = "file";
  bool pread = false;
};
Source g_source;

const fuse_opt kOptSpec[] = {{"splice", offsetof(Options, pread), 0},
                             {"pread", offsetof(Options, pread), 1},
                             {"name=%s", offsetof(Options, name), 0},
                             FUSE_OPT_END};

int ProcessArg(void* data, const char* arg, int key, fuse_args*) {
  auto* o = static_cast<Options*>(data);
  if (key == FUSE_OPT_KEY_NONOPT && o->source == nullptr) {
    o->source = strdup(arg);
    return 0;
  }
  return 1;  // the mount point and libfuse's own options go on to fuse_parse_cmdline
}

struct stat Attr(fuse_ino_t ino) {
  struct stat st = {};
  st.st_ino = ino;
  st.st_uid = getuid();
  st.st_gid = getgid();
  st.st_mtim = st.st_atim = st.st_ctim = g_source.st.st_mtim;
  st.st_blksize = 1 << 20;
  if (ino == kRootIno) {
    st.st_mode = S_IFDIR | 0555;
    st.st_nlink = 2;
  } else {
    st.st_mode = S_IFREG | 0444;
    st.st_nlink = 1;
    st.st_size = g_source.st.st_size;
    st.st_blocks = (g_source.st.st_size + 511) / 512;
  }
  return st;
}

void Init(void*, fuse_conn_info* conn) {
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e = {};
  e.entry_timeout = kTimeout;  // negative entries are cached too
  if (parent == kRootIno && g_source.name == name) {
    e.ino = kFileIno;
    e.attr = Attr(kFileIno);
    e.attr_timeout = kTimeout;
  }
  fuse_reply_entry(req, &e);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (ino != kRootIno && ino != kFileIno) return (void)fuse_reply_err(req, ENOENT);
  struct stat st = Attr(ino);
  fuse_reply_attr(req, &st, kTimeout);
}

void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kRootIno) return (void)fuse_reply_err(req, ENOTDIR);
  fi->keep_cache = 1;
  fi->cache_readdir = 1;
  fuse_reply_open(req, fi);
}

void ReadDir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  const std::pair<const char*, fuse_ino_t> entries[] = {
      {".", kRootIno}, {"..", kRootIno}, {g_source.name.c_str(), kFileIno}};
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < std::size(entries); ++i) {
    struct stat st = Attr(entries[i].second);
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].first, &st,
                                 static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kFileIno) return (void)fuse_reply_err(req, EISDIR);
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  if (!g_source.pread) {
    fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
    bv.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    bv.buf[0].fd = g_source.fd;
    bv.buf[0].pos = off;
    fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
    return;
  }
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(g_source.fd, buf.data() + done, size - done, off + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return (void)fuse_reply_err(req, errno);
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  fuse_reply_buf(req, buf.data(), done);
}

const fuse_lowlevel_ops& Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o = {};
    o.init = Init;
    o.lookup = Lookup;
    o.getattr = GetAttr;
    o.opendir = OpenDir;
    o.readdir = ReadDir;
    o.open = Open;
    o.read = Read;
    return o;
  }();
  return ops;
}

int Serve(fuse_args* args, const fuse_cmdline_opts& cmd) {
  fuse_session* se = fuse_session_new(args, &Ops(), sizeof(Ops()), nullptr);
  if (se == nullptr) return 1;
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, cmd.mountpoint) == 0) {
      fuse_daemonize(cmd.foreground);  // the parent returns once the mount exists
      if (cmd.singlethread) {
        rc = fuse_session_loop(se);
      } else {
        fuse_loop_config* cfg = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(cfg, cmd.clone_fd);
        fuse_loop_cfg_set_max_threads(cfg, cmd.max_threads);
        fuse_loop_cfg_set_idle_threads(cfg, cmd.max_idle_threads);
        rc = fuse_session_loop_mt(se, cfg);
        fuse_loop_cfg_destroy(cfg);
      }
      fuse_session_unmount(se);
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return rc == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  fuse_args args = FUSE_ARGS_INIT(argc, argv);
  Options o;
  if (fuse_opt_parse(&args, &o, kOptSpec, ProcessArg) != 0) return 2;
  fuse_cmdline_opts cmd = {};
  if (fuse_parse_cmdline(&args, &cmd) != 0) return 2;
  if (cmd.show_help || o.source == nullptr || cmd.mountpoint == nullptr) {
    std::fprintf(stderr,
                 "usage: %s [-o splice|pread] [-o name=NAME] [-f] [-d] [-s] SOURCE_FILE "
                 "MOUNTPOINT\n",
                 argv[0]);
    return cmd.show_help ? 0 : 2;
  }
  g_source.fd = ::open(o.source, O_RDONLY | O_CLOEXEC);
  if (g_source.fd < 0 || ::fstat(g_source.fd, &g_source.st) != 0) {
    std::fprintf(stderr, "passthrough_fuse: %s: %s\n", o.source, std::strerror(errno));
    return 1;
  }
  g_source.pread = o.pread != 0;
  if (o.name != nullptr) g_source.name = o.name;
  fuse_opt_add_arg(&args, "-oro,default_permissions,subtype=passthrough,fsname=passthrough");
  int rc = Serve(&args, cmd);
  free(cmd.mountpoint);
  fuse_opt_free_args(&args);
  return rc;
}
