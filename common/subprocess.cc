#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <fstream>

#include "stream/file.h"

namespace backupfs {

namespace {

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// In the child: wires the pipes to stdout/stderr and execs; never returns.
[[noreturn]] void Exec(const std::vector<std::string>& argv, int out, int err, pid_t die_with = 0) {
  // A server whose owner is killed (SIGKILL) must not keep its image open for ever. The
  // signal comes when the forking *thread* ends: only owners whose thread outlives the child
  // ask for it.
  if (die_with != 0 && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != die_with)) _exit(127);
  // Signals that backupfs-capture's watcher thread takes are blocked in the parent; a child
  // must see them again (SIGTERM ends a qemu-nbd server).
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int null = open("/dev/null", O_RDONLY);
  if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(127);
  execvp(args[0], args.data());
  _exit(127);
}

// Reads both pipes to their end without letting either fill up.
void Drain(int out_fd, int err_fd, std::string& out, std::string& err) {
  std::array<pollfd, 2> p{{{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}}};
  std::array<std::string*, 2> sink{&out, &err};
  char buf[65536];
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (size_t i = 0; i < p.size(); i++) {
      if (p[i].fd < 0 || p[i].revents == 0) continue;
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n > 0) {
        sink[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        p[i].fd = -1;
        open_fds--;
      }
    }
  }
}

std::string LastLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

}  // namespace

Result<std::string> RunCapture(const std::vector<std::string>& argv) {
  if (argv.empty()) return Status::InvalidArgument("RunCapture: empty argument vector");
  BFS_ASSIGN_OR_RETURN(Pipe out, MakePipe());
  BFS_ASSIGN_OR_RETURN(Pipe err, MakePipe());
  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno("fork for " + argv[0], errno);
  if (pid == 0) Exec(argv, out.write.get(), err.write.get());
  out.write = UniqueFd();
  err.write = UniqueFd();
  std::string stdout_text, stderr_text;
  Drain(out.read.get(), err.read.get(), stdout_text, stderr_text);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Status::FromErrno("waitpid for " + argv[0], errno);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return stdout_text;
  const std::string how = WIFEXITED(status)
                              ? "exited with " + std::to_string(WEXITSTATUS(status))
                              : "was killed by signal " + std::to_string(WTERMSIG(status));
  return Status::IOError(argv[0] + " " + how + ": " + LastLine(stderr_text));
}

Result<pid_t> SpawnDetached(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) return Status::InvalidArgument("SpawnDetached: empty argument vector");
  UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return Status::FromErrno("cannot open " + log_path, errno);
  BFS_ASSIGN_OR_RETURN(Pipe report, MakePipe());
  pid_t child = fork();
  if (child < 0) return Status::FromErrno("fork for " + argv[0], errno);
  if (child == 0) {
    // The middle process: a new session, then the daemon, then gone at once.
    setsid();
    pid_t daemon = fork();
    if (daemon == 0) Exec(argv, log.get(), log.get());
    (void)!write(report.write.get(), &daemon, sizeof daemon);
    _exit(daemon < 0 ? 127 : 0);
  }
  report.write = UniqueFd();
  pid_t daemon = -1;
  ssize_t n = read(report.read.get(), &daemon, sizeof daemon);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != sizeof daemon || daemon < 0) return Status::IOError("cannot start " + argv[0]);
  return daemon;
}

bool ProcessRuns(pid_t pid) {
  // /proc files report size 0: read them as a stream.
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return false;
  // "pid (comm) S ...": the state follows the last ')'.
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z' &&
         text[paren + 2] != 'X';
}

std::string LastLineOfFile(const std::string& path) {
  auto text = ReadWholeFile(path);
  return text.ok() ? LastLine(*text) : "";
}

namespace {

std::string HowEnded(int status) {
  return WIFEXITED(status) ? "exited with " + std::to_string(WEXITSTATUS(status))
                           : "was killed by signal " + std::to_string(WTERMSIG(status));
}

}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::Start(const std::vector<std::string>& argv,
                                                          const std::string& stderr_path,
                                                          bool die_with_thread) {
  if (argv.empty()) return Status::InvalidArgument("ChildProcess: empty argument vector");
  UniqueFd err(open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!err.valid()) return Status::FromErrno("cannot create " + stderr_path, errno);
  UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!null.valid()) return Status::FromErrno("cannot open /dev/null", errno);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno("fork for " + argv[0], errno);
  if (pid == 0) Exec(argv, null.get(), err.get(), die_with_thread ? parent : 0);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, stderr_path));
}

std::optional<std::string> ChildProcess::Exited() {
  if (reaped_) return "exited";
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return std::nullopt;
  reaped_ = true;
  return r < 0 ? "is gone" : HowEnded(status);
}

std::string ChildProcess::LastStderrLine() const {
  UniqueFd fd(open(stderr_path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fd.get(), buf, sizeof buf)) > 0;) text.append(buf, n);
  return LastLine(text);
}

Status ChildProcess::Stop(const std::string& what) {
  if (reaped_) return Status::IOError(what + " had already ended");
  kill(pid_, SIGTERM);
  int status = 0;
  pid_t r = 0;
  for (int i = 0; i < 3000 && r == 0; i++) {  // 30 s in 10 ms steps: it may be flushing
    r = waitpid(pid_, &status, WNOHANG);
    if (r == 0) usleep(10000);
  }
  if (r == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    reaped_ = true;
    return Status::IOError(what + " did not stop within 30 s of SIGTERM; killed");
  }
  reaped_ = true;
  if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  return Status::IOError(what + " " + (r < 0 ? "is gone" : HowEnded(status)) + ": " +
                         LastStderrLine());
}

ChildProcess::~ChildProcess() {
  if (reaped_) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 500; i++) {  // 5 s in 10 ms steps
    if (waitpid(pid_, nullptr, WNOHANG) != 0) return;
    usleep(10000);
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

}  // namespace backupfs
