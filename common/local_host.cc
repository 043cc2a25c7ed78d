// This machine as a Host: programs through posix_spawn (argument vectors, no shell), files
// with plain POSIX calls.
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "common/host.h"
#include "common/host_internal.h"
#include "common/subprocess.h"
#include "stream/file.h"

extern char** environ;

namespace backupfs {

namespace {

const std::string kThisHost = "this host";
const std::string kNoAddress;

// The owner of a posix_spawn_file_actions_t / posix_spawnattr_t.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    // Signals a watcher thread of ours blocks must reach the program again.
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

// Reads both pipes to their end without letting either fill up.
void DrainPipes(int out_fd, int err_fd, std::string& out, std::string& err) {
  std::array<pollfd, 2> p{{{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}}};
  std::array<std::string*, 2> sink{&out, &err};
  char buf[65536];
  for (int open_fds = 2; open_fds > 0;) {
    if (poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (size_t i = 0; i < p.size(); i++) {
      if (p[i].fd < 0 || p[i].revents == 0) continue;
      const ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n > 0) {
        sink[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        p[i].fd = -1;
        open_fds--;
      }
    }
  }
}

std::vector<char*> CArgv(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}

// A program started by Spawn: a ChildProcess whose stderr goes to a file of its own.
class LocalProcess : public HostProcess {
 public:
  LocalProcess(std::unique_ptr<ChildProcess> child, std::string stderr_path)
      : child_(std::move(child)), stderr_path_(std::move(stderr_path)) {}
  ~LocalProcess() override {
    child_.reset();  // stops it before its stderr file goes
    unlink(stderr_path_.c_str());
  }
  std::optional<std::string> Exited() override {
    std::optional<std::string> how = child_->Exited();
    if (!how) return std::nullopt;
    const std::string last = child_->LastStderrLine();
    return last.empty() ? *how : *how + ": " + last;
  }
  Status Stop(const std::string& what) override { return child_->Stop(what); }

 private:
  std::unique_ptr<ChildProcess> child_;
  std::string stderr_path_;
};

Status CopyFd(int from, int to, const std::string& from_name, const std::string& to_name) {
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    const ssize_t n = read(from, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("cannot read " + from_name, errno);
    if (n == 0) return Status::Ok();
    BFS_RETURN_IF_ERROR(WriteAll(to, std::span(buf.data(), static_cast<size_t>(n)), to_name));
  }
}

// Copies the file `from` into a new `to` (created or truncated with `mode`), fsynced.
Status CopyFileDurably(const std::string& from, const std::string& to, mode_t mode) {
  BFS_ASSIGN_OR_RETURN(UniqueFd in, OpenFile(from, O_RDONLY));
  BFS_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(to, O_WRONLY | O_CREAT | O_TRUNC, mode));
  if (fchmod(out.get(), mode) != 0) return Status::FromErrno("cannot chmod " + to, errno);
  BFS_RETURN_IF_ERROR(CopyFd(in.get(), out.get(), from, to));
  return FsyncFile(out.get(), to);
}

class LocalHost : public Host {
 public:
  bool remote() const override { return false; }
  const std::string& name() const override { return kThisHost; }
  const std::string& address() const override { return kNoAddress; }

  Result<CommandResult> Run(const std::vector<std::string>& argv) override {
    if (argv.empty()) return Status::InvalidArgument("Host::Run: empty argument vector");
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
    UniqueFd out_read(out[0]), out_write(out[1]);
    if (pipe2(err, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
    UniqueFd err_read(err[0]), err_write(err[1]);
    SpawnSetup setup;
    posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&setup.actions, out_write.get(), 1);
    posix_spawn_file_actions_adddup2(&setup.actions, err_write.get(), 2);
    pid_t pid = 0;
    std::vector<char*> args = CArgv(argv);
    const int rc = posix_spawnp(&pid, args[0], &setup.actions, &setup.attr, args.data(), environ);
    if (rc != 0) return Status::FromErrno("cannot run " + argv[0] + " on this host", rc);
    out_write = UniqueFd();
    err_write = UniqueFd();
    CommandResult result;
    DrainPipes(out_read.get(), err_read.get(), result.out, result.err);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) return Status::FromErrno("waitpid for " + argv[0], errno);
    }
    // As a shell reports it: 128 + the signal for a killed program.
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
  }

  Result<std::unique_ptr<HostProcess>> Spawn(const std::vector<std::string>& argv) override {
    if (argv.empty()) return Status::InvalidArgument("Host::Spawn: empty argument vector");
    const char* tmp = getenv("TMPDIR");
    std::string path =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/backupfs-stderr.XXXXXX";
    UniqueFd fd(mkostemp(path.data(), O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("cannot create " + path, errno);
    auto child = ChildProcess::Start(argv, path);
    if (!child.ok()) {
      unlink(path.c_str());
      return child.status();
    }
    return std::unique_ptr<HostProcess>(new LocalProcess(std::move(*child), path));
  }

  Result<std::string> ReadFile(const std::string& path) override { return ReadWholeFile(path); }

  Status FetchFile(const std::string& path, const std::string& local_path) override {
    return CopyFileDurably(path, local_path, 0600);
  }

  Status PutFile(const std::string& local_path, const std::string& path, mode_t mode) override {
    const std::string partial = path + ".partial";
    BFS_RETURN_IF_ERROR(CopyFileDurably(local_path, partial, mode));
    BFS_RETURN_IF_ERROR(Rename(partial, path));
    return FsyncParentDir(path);
  }

  Status WriteFile(const std::string& path, const std::string& contents, mode_t mode) override {
    return WriteFileAtomically(
        path, std::span(reinterpret_cast<const uint8_t*>(contents.data()), contents.size()),
        static_cast<int>(mode));
  }

  Result<bool> Exists(const std::string& path) override {
    struct stat st;
    if (stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    return Status::FromErrno("cannot tell whether " + path + " exists", errno);
  }

  Status MakeDirs(const std::string& path, mode_t mode) override {
    for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
      const std::string prefix = path.substr(0, slash);
      if (!prefix.empty() && mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
        return Status::FromErrno("cannot create directory " + prefix, errno);
      }
      if (slash == std::string::npos) break;
    }
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return Status::FromErrno("cannot create " + path, errno);
    if (!S_ISDIR(st.st_mode)) return Status::IOError(path + " exists and is not a directory");
    return Status::Ok();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (rename(from.c_str(), to.c_str()) != 0) {
      return Status::FromErrno("cannot rename " + from + " to " + to, errno);
    }
    return Status::Ok();
  }

  Status Remove(const std::string& path) override {
    if (remove(path.c_str()) != 0) return Status::FromErrno("cannot remove " + path, errno);
    return Status::Ok();
  }

  Status Sync(const std::string& path) override {
    BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
    return FsyncFile(fd.get(), path);
  }
};

}  // namespace

std::unique_ptr<Host> MakeLocalHost() { return std::make_unique<LocalHost>(); }

}  // namespace backupfs
