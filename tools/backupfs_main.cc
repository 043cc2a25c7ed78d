// backupfs: mounts a saveset (or a directory of savesets) read-only; every restore point's disks
// appear as raw images, and the mount follows new and removed points.
//   backupfs [options] SAVESET_DIR MOUNTPOINT
// Parses arguments, loads the saveset, mounts and serves; the work is in backupfs/.
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "backupfs/chain.h"
#include "backupfs/fuse_ops.h"
#include "backupfs/readahead.h"
#include "storage/open_storage.h"
#include "storage/read_cache.h"

namespace {

struct Options {
  char* saveset = nullptr;
  int uid = -1;
  int gid = -1;
  char* umask = nullptr;
  unsigned cache_mib = 128;
  char* verify = nullptr;
  unsigned readahead_kib = 1024;  // fastest in every bench/RESULTS-mount.md run
  int splice = 0;
  int allow_empty = 0;
  unsigned open_files = 0;  // 0: the default (DefaultOpenFiles)
  int show_version = 0;
  int show_help = 0;
  // A saveset on S3 (s3://bucket/prefix): overrides of the environment and ~/.aws.
  char* s3_endpoint = nullptr;
  char* s3_region = nullptr;
  char* s3_profile = nullptr;
  char* s3_cache_dir = nullptr;
  unsigned s3_cache_mib = 4096;
  unsigned s3_memory_mib = 256;
};

enum { kKeyHelp, kKeyVersion };

#define BFS_OPT(t, p) \
  { t, offsetof(Options, p), 1 }
const fuse_opt kOptSpec[] = {BFS_OPT("uid=%d", uid),
                             BFS_OPT("gid=%d", gid),
                             BFS_OPT("umask=%s", umask),
                             BFS_OPT("cache_size=%u", cache_mib),
                             BFS_OPT("verify=%s", verify),
                             BFS_OPT("readahead_kb=%u", readahead_kib),
                             BFS_OPT("splice", splice),
                             BFS_OPT("allow_empty", allow_empty),
                             BFS_OPT("open_files=%u", open_files),
                             BFS_OPT("s3_endpoint=%s", s3_endpoint),
                             BFS_OPT("s3_region=%s", s3_region),
                             BFS_OPT("s3_profile=%s", s3_profile),
                             BFS_OPT("s3_cache_dir=%s", s3_cache_dir),
                             BFS_OPT("s3_cache_size=%u", s3_cache_mib),
                             BFS_OPT("s3_memory=%u", s3_memory_mib),
                             FUSE_OPT_KEY("-V", kKeyVersion),
                             FUSE_OPT_KEY("--version", kKeyVersion),
                             FUSE_OPT_KEY("-h", kKeyHelp),
                             FUSE_OPT_KEY("--help", kKeyHelp),
                             FUSE_OPT_END};

int ProcessArg(void* data, const char* arg, int key, fuse_args*) {
  auto* o = static_cast<Options*>(data);
  switch (key) {
    case FUSE_OPT_KEY_NONOPT:
      if (o->saveset == nullptr) {
        o->saveset = strdup(arg);
        return 0;
      }
      return 1;  // the mount point, for fuse_parse_cmdline
    case kKeyVersion:
      o->show_version = 1;
      return 0;
    case kKeyHelp:
      o->show_help = 1;
      return 1;  // fuse_parse_cmdline sees it too
    default:
      return 1;
  }
}

void Usage(const char* prog) {
  std::printf(
      "usage: %s [options] SAVESET_DIR|s3://BUCKET/PREFIX MOUNTPOINT\n\n"
      "Mounts a backupfs/virtnbdbackup saveset read-only: MOUNTPOINT/<restore point>/<disk>.raw;\n"
      "a directory of savesets shows MOUNTPOINT/<saveset>/<restore point>/<disk>.raw.\n"
      "A saveset on S3 is read in place (endpoint and keys: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,\n"
      "AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_PROFILE and ~/.aws, as the AWS CLI reads them).\n"
      "New restore points show within a second or two; removed ones go.\n\n"
      "backupfs options:\n"
      "    -o uid=N               owner of every file (default: the mounting user)\n"
      "    -o gid=N               group of every file (default: the mounting user's)\n"
      "    -o umask=M             octal permission mask (default: 0227: files 0440, dirs 0550)\n"
      "    -o cache_size=MIB      memory for decoded lz4 chunks, whole mount (default: 128)\n"
      "    -o verify=on|off       check chunk checksums on every read (default: on)\n"
      "    -o readahead_kb=KIB    kernel readahead of the mount (default: 1024; 0 keeps)\n"
      "    -o splice              zero-copy replies where no check is needed (default: off)\n"
      "    -o allow_empty         mount even with no restore point yet (default: refuse)\n"
      "    -o open_files=N        data files loaded savesets keep open (default: 1024, or a\n"
      "                           quarter of the open-file limit when lower)\n"
      "    -o s3_endpoint=URL     S3 endpoint (default: AWS_ENDPOINT_URL, the profile's)\n"
      "    -o s3_region=REGION    S3 region (default: AWS_REGION, the profile's, us-east-1)\n"
      "    -o s3_profile=NAME     profile of ~/.aws/config and credentials (default: AWS_PROFILE)\n"
      "    -o s3_memory=MIB       memory for ranges fetched from S3, whole mount (default: 256)\n"
      "    -o s3_cache_dir=DIR    also keep fetched ranges and built indexes in DIR\n"
      "    -o s3_cache_size=MIB   the most s3_cache_dir holds (default: 4096)\n"
      "    -o allow_other         let other users read (see fuse(8))\n"
      "    -f                     stay in the foreground\n"
      "    -d                     debug output (implies -f)\n"
      "    -s                     single-threaded\n"
      "    -V, --version          print the version\n"
      "    -h, --help             print this help\n\n",
      prog);
}

bool foreground_logging = true;

void LogError(const std::string& message) {
  if (foreground_logging) {
    std::fprintf(stderr, "backupfs: %s\n", message.c_str());
  } else {
    syslog(LOG_ERR, "%s", message.c_str());
  }
}

int Serve(fuse_args* args, const fuse_cmdline_opts& cmd, const Options& o,
          backupfs::FuseContext* ctx) {
  fuse_session* se =
      fuse_session_new(args, &backupfs::BackupfsOps(), sizeof(backupfs::BackupfsOps()), ctx);
  if (se == nullptr) return 1;
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, cmd.mountpoint) == 0) {
      if (o.readahead_kib > 0) {
        auto dev = backupfs::MountDeviceNumber(cmd.mountpoint);
        const unsigned kib = o.readahead_kib;
        const bool debug = cmd.debug;
        ctx->after_init = [dev, kib, debug] {
          backupfs::Status s = dev.ok() ? backupfs::SetReadaheadKib(*dev, kib) : dev.status();
          if (!s.ok() && debug) LogError("readahead not raised: " + s.message());
        };
      }
      if (!cmd.foreground) openlog("backupfs", LOG_PID, LOG_DAEMON);
      foreground_logging = cmd.foreground;
      {
        // The load may have left fetches running or queued; only this thread lives on in the
        // daemon: the fetch threads stop for the fork and start again in the child.
        backupfs::ReadCache::PausedForFork paused;
        fuse_daemonize(cmd.foreground);
      }
      if (cmd.singlethread) {
        rc = fuse_session_loop(se);
      } else {
        fuse_loop_config* cfg = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(cfg, cmd.clone_fd);
        // UINT_MAX means "not given": keep libfuse's defaults then.
        if (cmd.max_threads != UINT_MAX) fuse_loop_cfg_set_max_threads(cfg, cmd.max_threads);
        if (cmd.max_idle_threads != UINT_MAX) {
          fuse_loop_cfg_set_idle_threads(cfg, cmd.max_idle_threads);
        }
        rc = fuse_session_loop_mt(se, cfg);
        fuse_loop_cfg_destroy(cfg);
      }
      fuse_session_unmount(se);
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  // The loop returns the number of the signal that ended it: an unmount by SIGTERM, SIGINT or
  // SIGHUP (what systemd and Ctrl-C send) is a clean exit.
  return rc == 0 || rc == SIGTERM || rc == SIGINT || rc == SIGHUP ? 0 : 1;
}

// Raises the soft limit on open files to the hard one (a mount over many savesets may hold
// many data files); returns the default bound for -o open_files: 1024, or a quarter of the
// limit when that is lower.
unsigned DefaultOpenFiles() {
  struct rlimit r {};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 256;
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
  }
  return static_cast<unsigned>(std::min<rlim_t>(1024, std::max<rlim_t>(r.rlim_cur / 4, 16)));
}

// What the mount shows, at mount time: the broken chains set aside in a saveset, and with -d
// the restore points and extents (a saveset) or the savesets (a collection).
void ReportRoot(backupfs::LiveTree& tree, const backupfs::Backing::Listing& root,
                const std::string& dir, bool debug) {
  for (const auto& [name, node] : root.children) {
    if (root.saveset && node->backing) {
      LogError(dir + "/" + name + ": a chain set aside by backupfs-capture; shown read-only as " +
               name + "/");
    }
  }
  if (!debug) return;
  if (!root.saveset) {
    std::fprintf(stderr, "backupfs: %zu savesets\n",
                 root.children.size() - (root.children.count("latest")));
    return;
  }
  auto state = tree.root().backing->saveset()->Loaded().state;
  uint64_t extents = 0;
  for (const auto& [point, disks] : state->images) {
    for (const auto& [disk, image] : disks) extents += image->Get().extents().size();
  }
  std::fprintf(stderr, "backupfs: %zu restore points, %llu extents (%zu bytes each)\n",
               state->model.points.size(), static_cast<unsigned long long>(extents),
               sizeof(backupfs::ImageExtent));
}

// Owns what fuse_opt_parse and fuse_parse_cmdline allocate, on every way out of main.
struct ParsedArgs {
  fuse_args args;
  Options o;
  fuse_cmdline_opts cmd = {};
  ParsedArgs(int argc, char** argv) : args(FUSE_ARGS_INIT(argc, argv)) {}
  ~ParsedArgs() {
    free(o.saveset);
    free(o.umask);
    free(o.verify);
    free(cmd.mountpoint);
    fuse_opt_free_args(&args);
  }
};

backupfs::StoreOptions StoreOptionsOf(const Options& o) {
  backupfs::StoreOptions s;
  if (o.s3_endpoint != nullptr) s.endpoint = o.s3_endpoint;
  if (o.s3_region != nullptr) s.region = o.s3_region;
  if (o.s3_profile != nullptr) s.profile = o.s3_profile;
  if (o.s3_cache_dir != nullptr) s.cache_dir = o.s3_cache_dir;
  s.cache_dir_bytes = static_cast<uint64_t>(o.s3_cache_mib) << 20;
  s.memory_cache_bytes = static_cast<uint64_t>(o.s3_memory_mib) << 20;
  return s;
}

// Loads the saveset and serves it; returns the exit status.
int Run(ParsedArgs& p) {
  const Options& o = p.o;
  backupfs::FuseContext ctx;
  ctx.uid = o.uid >= 0 ? static_cast<uid_t>(o.uid) : getuid();
  ctx.gid = o.gid >= 0 ? static_cast<gid_t>(o.gid) : getgid();
  if (o.umask != nullptr) {
    char* end = nullptr;
    unsigned long mask = std::strtoul(o.umask, &end, 8);
    if (*o.umask == '\0' || *end != '\0' || mask > 0777) {
      std::fprintf(stderr, "backupfs: umask must be an octal number up to 0777, not '%s'\n",
                   o.umask);
      return 2;
    }
    ctx.umask = static_cast<mode_t>(mask);
  }
  backupfs::OpenOptions open;
  // One cache for all data files: cache_size bounds the whole mount.
  open.reader.cache =
      std::make_shared<backupfs::ChunkCache>(static_cast<uint64_t>(o.cache_mib) << 20);
  if (o.verify != nullptr && std::strcmp(o.verify, "on") != 0) {
    if (std::strcmp(o.verify, "off") != 0) {
      std::fprintf(stderr, "backupfs: verify must be on or off, not '%s'\n", o.verify);
      return 2;
    }
    open.reader.verify_checksums = false;
  }
  backupfs::LiveTree::Options tree;
  tree.open = open;
  const unsigned default_open_files = DefaultOpenFiles();  // raises the limit, always
  tree.max_open_files = o.open_files != 0 ? o.open_files : default_open_files;
  tree.report = LogError;  // on stderr until the daemon goes to the background
  backupfs::Result<std::unique_ptr<backupfs::Storage>> storage =
      backupfs::OpenStorage(o.saveset, StoreOptionsOf(o));
  if (!storage.ok()) {
    std::fprintf(stderr, "backupfs: %s\n", storage.status().message().c_str());
    return 1;
  }
  // A store that cannot be reached (wrong keys, no such bucket, no endpoint) fails the mount
  // now, with the store's answer, rather than looking like an empty saveset.
  backupfs::Result<bool> exists = (*storage)->Exists();
  if (!exists.ok()) {
    std::fprintf(stderr, "backupfs: %s: %s\n", o.saveset, exists.status().message().c_str());
    return 1;
  }
  ctx.tree = std::make_unique<backupfs::LiveTree>(
      std::shared_ptr<backupfs::Storage>(std::move(storage).value()), tree);
  auto root = ctx.tree->root().backing->Refresh();
  if (!root || root->children.empty()) {
    if (!o.allow_empty) {
      std::fprintf(stderr,
                   "backupfs: %s: no restore point can be served; not mounting (-o allow_empty "
                   "mounts it anyway, to show backups as they arrive)\n",
                   o.saveset);
      return 1;
    }
    std::fprintf(stderr,
                 "backupfs: %s: no restore point yet; mounted to show them as they arrive\n",
                 o.saveset);
  }
  if (root) ReportRoot(*ctx.tree, *root, o.saveset, p.cmd.debug);
  ctx.log_error = LogError;
  ctx.splice = o.splice != 0;
  return Serve(&p.args, p.cmd, o, &ctx);
}

}  // namespace

int main(int argc, char** argv) {
  ParsedArgs p(argc, argv);
  if (fuse_opt_parse(&p.args, &p.o, kOptSpec, ProcessArg) != 0) return 2;
  if (p.o.show_version) {
    std::printf("backupfs %s (libfuse %s)\n", BACKUPFS_VERSION, fuse_pkgversion());
    return 0;
  }
  if (fuse_parse_cmdline(&p.args, &p.cmd) != 0) return 2;
  if (p.cmd.show_help || p.o.show_help) {
    Usage(argv[0]);
    fuse_cmdline_help();
    fuse_lowlevel_help();
    return 0;
  }
  if (p.o.saveset == nullptr || p.cmd.mountpoint == nullptr) {
    std::fprintf(stderr, "usage: %s [options] SAVESET_DIR MOUNTPOINT (see --help)\n", argv[0]);
    return 2;
  }
  // Absolute, because the daemon changes to / when it goes to the background.
  if (!backupfs::IsStoreAddress(p.o.saveset)) {
    char* real = realpath(p.o.saveset, nullptr);
    if (real == nullptr) {
      std::fprintf(stderr, "backupfs: %s: %s\n", p.o.saveset, std::strerror(errno));
      return 1;
    }
    free(p.o.saveset);
    p.o.saveset = real;
  }
  // The kernel enforces uid/gid/umask; `mount` shows the saveset as the source.
  std::string fsname = "-ofsname=" + backupfs::EscapeMountOption(p.o.saveset);
  fuse_opt_add_arg(&p.args, "-odefault_permissions,ro,nosuid,nodev,subtype=backupfs");
  fuse_opt_add_arg(&p.args, fsname.c_str());
  return Run(p);
}
