#include "common/qemu_nbd.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "stream/file.h"

namespace backupfs {

namespace {

constexpr auto kStartTimeout = std::chrono::seconds(30);

// True once something accepts connections on the unix socket `path`.
bool Listening(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

// True once something accepts connections on host:port.
bool ListeningTcp(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &list) != 0) return false;
  bool ok = false;
  for (addrinfo* a = list; a != nullptr && !ok; a = a->ai_next) {
    UniqueFd fd(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    ok = fd.valid() && connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0;
  }
  freeaddrinfo(list);
  return ok;
}

bool Listening(const QemuNbdOptions& o) {
  return o.socket.empty() ? ListeningTcp(o.tcp_host, o.tcp_port) : Listening(o.socket);
}

std::string Address(const QemuNbdOptions& o) {
  return o.socket.empty() ? o.tcp_host + ":" + o.tcp_port : o.socket;
}

// A value inside QEMU's key=value,... option syntax: commas are doubled.
std::string QemuOptValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::vector<std::string> Argv(const QemuNbdOptions& o) {
  std::vector<std::string> argv = {"qemu-nbd", "--persistent", "--shared=0",
                                   "--export-name=" + o.export_name};
  if (o.socket.empty()) {
    argv.insert(argv.end(), {"--bind=" + o.tcp_host, "--port=" + o.tcp_port});
  } else {
    argv.push_back("--socket=" + o.socket);
  }
  if (!o.writable) argv.push_back("--read-only");
  if (!o.bitmap.empty()) argv.push_back("--bitmap=" + o.bitmap);
  if (o.compress) {
    argv.push_back("--image-opts");
    argv.push_back("driver=compress,file.driver=" + o.format +
                   ",file.file.driver=file,file.file.filename=" + QemuOptValue(o.image));
  } else {
    argv.push_back("--format=" + o.format);
    argv.push_back(o.image);
  }
  return argv;
}

}  // namespace

Result<std::unique_ptr<QemuNbdServer>> QemuNbdServer::Start(const QemuNbdOptions& o) {
  const std::vector<std::string> argv = Argv(o);
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child,
                       ChildProcess::Start(argv, o.log_path, o.die_with_thread));
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!Listening(o)) {
    if (auto ended = child->Exited()) {
      return Status::IOError("qemu-nbd on " + o.image + " " + *ended + ": " +
                             child->LastStderrLine());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::IOError("qemu-nbd on " + o.image + " does not listen on " + Address(o) +
                             " after 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::unique_ptr<QemuNbdServer>(new QemuNbdServer(std::move(child), Address(o)));
}

}  // namespace backupfs
