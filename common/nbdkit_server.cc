#include "common/nbdkit_server.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <fstream>
#include <thread>

#include "common/listening.h"
#include "stream/file.h"

namespace backupfs {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(30);

std::vector<std::string> Argv(const NbdkitOptions& o) {
  // -f: stays our child; --exit-with-parent: and goes if we are killed.
  std::vector<std::string> argv = {"nbdkit", "-f", "--exit-with-parent", "-e", o.export_name};
  if (o.socket.empty()) {
    argv.insert(argv.end(), {"-i", o.tcp_host, "-p", o.tcp_port});
  } else {
    argv.insert(argv.end(), {"-U", o.socket});
  }
  if (o.writable) {
    argv.push_back("--filter=cow");
  } else {
    argv.push_back("-r");
  }
  if (!o.tls_certificates.empty()) {
    argv.insert(argv.end(), {"--tls=require", "--tls-certificates=" + o.tls_certificates});
  }
  argv.insert(argv.end(), {"file", "file=" + o.image});
  return argv;
}

// Without -f nbdkit binds and listens, then forks into the background, whose process writes
// `pid_file`: the foreground process's exit status says whether the port could be bound.
std::vector<std::string> DetachedArgv(const NbdkitOptions& o, const std::string& pid_file) {
  std::vector<std::string> argv = Argv(o);
  argv.erase(argv.begin() + 1, argv.begin() + 3);  // -f, --exit-with-parent: it outlives us
  argv.insert(argv.begin() + 1, {"-P", pid_file});
  return argv;
}

// The pid nbdkit wrote, once it is complete (nullopt before).
std::optional<pid_t> ReadPidFile(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok() || text->empty() || text->back() != '\n') return std::nullopt;
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size() - 1, pid);
  if (ec != std::errc() || end != text->data() + text->size() - 1 || pid <= 0) {
    return std::nullopt;
  }
  return pid;
}

// argv of a running process, from /proc (empty when it is gone).
std::vector<std::string> CommandLine(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  std::string word;
  while (std::getline(in, word, '\0')) argv.push_back(word);
  return argv;
}

}  // namespace

Result<std::unique_ptr<NbdkitServer>> NbdkitServer::Start(const NbdkitOptions& o) {
  const std::string address = o.socket.empty() ? o.tcp_host + ":" + o.tcp_port : o.socket;
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child,
                       ChildProcess::Start(Argv(o), o.log_path, /*die_with_thread=*/true));
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  for (;;) {
    if (o.socket.empty() ? AcceptsTcp(o.tcp_host, o.tcp_port) : AcceptsUnix(o.socket)) break;
    if (auto ended = child->Exited()) {
      return Status::IOError("nbdkit on " + o.image + " " + *ended + ": " +
                             child->LastStderrLine());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::IOError("nbdkit on " + o.image + " does not listen on " + address +
                             " after 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::unique_ptr<NbdkitServer>(new NbdkitServer(std::move(child), address));
}

std::optional<std::string> NbdkitServer::Exited() {
  auto how = child_->Exited();
  if (how) *how += ": " + child_->LastStderrLine();
  return how;
}

Result<pid_t> StartDetachedNbdkit(const NbdkitOptions& o, const std::string& pid_file) {
  const std::string address = o.tcp_host + ":" + o.tcp_port;
  unlink(pid_file.c_str());
  auto started = RunCapture(DetachedArgv(o, pid_file));
  if (!started.ok()) {
    if (started.status().message().find("Address already in use") != std::string::npos) {
      return Status::FailedPrecondition("cannot serve NBD on " + address +
                                        ": the port is in use (another export or program "
                                        "listens there); choose another port");
    }
    return started.status().WithPrefix("cannot serve " + o.image + " on " + address);
  }
  // The background process writes the pid file, maybe after the foreground one exited.
  std::optional<pid_t> pid;
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!(pid = ReadPidFile(pid_file)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!pid || !IsNbdkitServing(*pid, o.image)) {
    return Status::IOError("nbdkit serving " + o.image + " on " + address +
                           " is gone right after its start (pid file " + pid_file + ")");
  }
  return *pid;
}

bool IsNbdkitServing(pid_t pid, const std::string& image) {
  if (pid <= 0 || !ProcessRuns(pid)) return false;
  const std::vector<std::string> argv = CommandLine(pid);
  if (argv.empty() || argv[0].substr(argv[0].rfind('/') + 1) != "nbdkit") return false;
  for (const std::string& a : argv) {
    if (a == "file=" + image) return true;
  }
  return false;
}

Status StopDetachedNbdkit(pid_t pid, const std::string& image) {
  if (!IsNbdkitServing(pid, image)) return Status::Ok();
  if (kill(pid, SIGTERM) != 0 && errno != ESRCH) {
    return Status::FromErrno(
        "cannot stop nbdkit (pid " + std::to_string(pid) + ") serving " + image, errno);
  }
  const auto kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool killed = false;
  while (ProcessRuns(pid)) {
    if (!killed && std::chrono::steady_clock::now() > kill_at) {
      kill(pid, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Status::Ok();
}

}  // namespace backupfs
