#include "restore/saveset_mount.h"

#include <libmount/libmount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <thread>

#include "common/subprocess.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

constexpr char kFsType[] = "fuse.backupfs";
// Loading a saveset of thousands of files without sidecar indexes takes a while.
constexpr auto kMountTimeout = std::chrono::seconds(60);

// The backupfs program installed with this one (same directory), else whatever PATH finds:
// a build tree and an installation both keep the programs together.
std::string BackupfsProgram() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path beside = self.parent_path() / "backupfs";
    if (access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  return "backupfs";
}

struct TableFreer {
  void operator()(libmnt_table* t) const { mnt_unref_table(t); }
};
struct IterFreer {
  void operator()(libmnt_iter* i) const { mnt_free_iter(i); }
};

Result<std::unique_ptr<libmnt_table, TableFreer>> MountTable() {
  std::unique_ptr<libmnt_table, TableFreer> table(mnt_new_table());
  if (!table) return Status::IOError("libmount: cannot allocate a mount table");
  if (int r = mnt_table_parse_mtab(table.get(), nullptr); r != 0) {
    return Status::FromErrno("cannot read the mount table (/proc/self/mountinfo)", -r);
  }
  return table;
}

}  // namespace

std::string MountAddress(const Storage& saveset) {
  if (std::optional<std::string> dir = saveset.LocalDir()) {
    return fs::absolute(*dir).lexically_normal().string();
  }
  return saveset.address();
}

std::string MountStoreOptions(const Storage& saveset, const StoreOptions& options) {
  return saveset.LocalDir() ? "" : MountOptionsOf(options);
}

Status MountSaveset(const SavesetMountOptions& o) {
  std::vector<std::string> argv = {BackupfsProgram()};
  std::string opts = "default_permissions";  // the daemon adds it too: a harmless repeat
  if (o.allow_other) opts += ",allow_other";
  if (o.uid) opts += ",uid=" + std::to_string(*o.uid);
  if (o.gid) opts += ",gid=" + std::to_string(*o.gid);
  if (!o.store_options.empty()) opts += "," + o.store_options;
  // Absolute paths (and store addresses): never taken for options, whatever their names.
  const std::string mountpoint = fs::absolute(o.mountpoint).string();
  argv.insert(argv.end(), {"-o", opts, o.saveset, mountpoint});
  const std::string what = "cannot mount the saveset " + o.saveset + " on " + o.mountpoint;
  if (o.log_file.empty()) {
    // Without -f the daemon forks once the mount is up; its parent's exit tells us so.
    auto r = RunCapture(argv);
    return r.ok() ? Status::Ok() : r.status().WithPrefix(what);
  }
  // In the foreground (its messages on stderr, into the log), detached from us: the mount
  // is up once the mount table shows it answering.
  argv.insert(argv.begin() + 1, "-f");
  BFS_ASSIGN_OR_RETURN(pid_t pid, SpawnDetached(argv, o.log_file));
  const auto deadline = std::chrono::steady_clock::now() + kMountTimeout;
  for (;;) {
    BFS_ASSIGN_OR_RETURN(MountState state, ProbeMount(mountpoint));
    if (state == MountState::kServing) return Status::Ok();
    if (!ProcessRuns(pid)) {
      return Status::IOError(what + ": backupfs ended: " + LastLineOfFile(o.log_file));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGTERM);
      return Status::IOError(what + ": not mounted after 60 s (see " + o.log_file + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

const char* MountStateName(MountState s) {
  switch (s) {
    case MountState::kAbsent:
      return "not mounted";
    case MountState::kServing:
      return "mounted";
    case MountState::kStale:
      return "stale (its daemon is gone)";
  }
  return "?";
}

Result<MountState> ProbeMount(const std::string& mountpoint) {
  BFS_ASSIGN_OR_RETURN(auto table, MountTable());
  libmnt_fs* found = mnt_table_find_target(table.get(), mountpoint.c_str(), MNT_ITER_BACKWARD);
  if (found == nullptr) return MountState::kAbsent;
  const char* type = mnt_fs_get_fstype(found);
  if (type == nullptr || std::string(type) != kFsType) {
    return Status::FailedPrecondition(mountpoint + " has another filesystem mounted on it (" +
                                      (type ? type : "?") + "), not a backupfs mount");
  }
  // statfs always reaches the daemon (a stat may be answered from the kernel's cache).
  struct statfs st;
  if (statfs(mountpoint.c_str(), &st) != 0 && errno == ENOTCONN) return MountState::kStale;
  return MountState::kServing;
}

Status UnmountSaveset(const std::string& mountpoint) {
  if (RunCapture({"fusermount3", "-u", "-q", "--", mountpoint}).ok()) return Status::Ok();
  // Busy (a process still has an image open) or already half gone: detach it now; the daemon
  // exits once the last file is closed.
  auto lazy = RunCapture({"fusermount3", "-u", "-z", "--", mountpoint});
  if (!lazy.ok()) return lazy.status().WithPrefix("cannot unmount " + mountpoint);
  return Status::Ok();
}

Result<std::vector<std::string>> BackupfsMounts() {
  BFS_ASSIGN_OR_RETURN(auto table, MountTable());
  std::unique_ptr<libmnt_iter, IterFreer> iter(mnt_new_iter(MNT_ITER_FORWARD));
  if (!iter) return Status::IOError("libmount: cannot allocate an iterator");
  std::vector<std::string> out;
  libmnt_fs* fs = nullptr;
  while (mnt_table_next_fs(table.get(), iter.get(), &fs) == 0) {
    const char* type = mnt_fs_get_fstype(fs);
    const char* target = mnt_fs_get_target(fs);
    if (type != nullptr && target != nullptr && std::string(type) == kFsType) {
      out.emplace_back(target);
    }
  }
  return out;
}

}  // namespace backupfs
