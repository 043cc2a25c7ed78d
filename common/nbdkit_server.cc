#include "common/nbdkit_server.h"

#include <chrono>
#include <thread>

#include "common/listening.h"

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
  argv.insert(argv.end(), {"file", "file=" + o.image});
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

}  // namespace backupfs
