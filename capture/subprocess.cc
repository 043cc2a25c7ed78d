#include "capture/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>

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
[[noreturn]] void Exec(const std::vector<std::string>& argv, int out, int err) {
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

}  // namespace backupfs
