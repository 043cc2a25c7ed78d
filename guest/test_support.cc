#include "guest/test_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace backupfs::guest_test {
namespace {

// Where a child's stdin and stdout come from and go; stderr always goes to /dev/null.
struct ChildIo {
  std::string stdin_path = "";  // "" is /dev/null
  int stdout_fd = -1;
};

// In the child after fork: wires up fds 0-2 as `io` says and execs argv. Never returns. The
// descriptors it opens are close-on-exec, so the tool sees only 0-2.
[[noreturn]] void ExecTool(const std::vector<std::string>& argv, const ChildIo& io) {
  const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  const int in = io.stdin_path.empty() ? null : open(io.stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = io.stdout_fd >= 0 ? io.stdout_fd : null;
  if (in >= 0) dup2(in, STDIN_FILENO);
  if (out >= 0) dup2(out, STDOUT_FILENO);
  if (null >= 0) dup2(null, STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

pid_t Spawn(const std::vector<std::string>& argv, const ChildIo& io) {
  const pid_t pid = fork();
  if (pid == 0) ExecTool(argv, io);
  return pid;
}

}  // namespace

int WaitTool(pid_t pid) {
  if (pid < 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) != pid) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int RunTool(const std::vector<std::string>& argv, const std::string& stdin_path) {
  return WaitTool(Spawn(argv, {.stdin_path = stdin_path}));
}

std::string RunToolOutput(const std::vector<std::string>& argv, const std::string& stdin_path) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe for " << argv[0] << ": " << strerror(errno);
    return "";
  }
  const pid_t pid = Spawn(argv, {.stdin_path = stdin_path, .stdout_fd = fds[1]});
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, n);
  close(fds[0]);
  const int status = WaitTool(pid);
  if (status != 0) {
    ADD_FAILURE() << argv[0] << " exited with " << status;
    return "";
  }
  return out;
}

pid_t StartDetachedTool(const std::vector<std::string>& argv) { return Spawn(argv, {}); }

}  // namespace backupfs::guest_test
