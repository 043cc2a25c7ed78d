#include "common/qemu_nbd.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/listening.h"
#include "stream/file.h"

namespace backupfs {

namespace {

constexpr auto kStartTimeout = std::chrono::seconds(30);

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
  if (o.tcp_port != 0) {
    if (!o.tcp_address.empty()) argv.push_back("--bind=" + o.tcp_address);
    argv.push_back("--port=" + std::to_string(o.tcp_port));
  } else {
    argv.push_back("--socket=" + o.socket);
  }
  if (!o.tls_dir.empty()) {
    argv.push_back("--object");
    argv.push_back("tls-creds-x509,id=tls0,dir=" + QemuOptValue(o.tls_dir) +
                   ",endpoint=server,verify-peer=" + (o.tls_verify_peer ? "on" : "off"));
    argv.push_back("--tls-creds=tls0");
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

std::string PortHint(const QemuNbdOptions& o) {
  return "; another backup may be running on port " + std::to_string(o.tcp_port) +
         ": pick another port with -P";
}

bool WildcardAddress(const std::string& a) { return a.empty() || a == "0.0.0.0" || a == "::"; }

// Where a TCP server started on `host` is probed from here.
std::string ProbeAddress(const Host& host, const QemuNbdOptions& o, const std::string& probe) {
  if (!probe.empty()) return probe;
  if (!WildcardAddress(o.tcp_address)) return o.tcp_address;
  return host.remote() ? host.address() : "127.0.0.1";
}

}  // namespace

Result<std::unique_ptr<HostQemuNbdServer>> StartQemuNbdOn(Host& host, const QemuNbdOptions& o,
                                                          const std::string& probe_address) {
  const bool tcp = o.tcp_port != 0;
  if (!tcp && host.remote()) {
    return Status::InvalidArgument("qemu-nbd on " + host.name() +
                                   " must listen on TCP: a unix socket there is out of reach");
  }
  const std::string probe = ProbeAddress(host, o, probe_address);
  const std::string port = std::to_string(o.tcp_port);
  const std::string where =
      tcp ? (WildcardAddress(o.tcp_address) ? "*" : o.tcp_address) + ":" + port : o.socket;
  const std::string what = "qemu-nbd on " + host.name() + " (" + where + ")";
  // A server already there would answer our probe in place of the new one.
  if (tcp && AcceptsTcp(probe, port)) {
    return Status::FailedPrecondition("cannot start " + what + " for " + o.image +
                                      ": something already listens on " + probe + ":" + port +
                                      PortHint(o));
  }
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<HostProcess> process, host.Spawn(Argv(o)));
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (tcp ? !AcceptsTcp(probe, port) : !AcceptsUnix(o.socket)) {
    if (auto ended = process->Exited()) {
      Status st = Status::IOError(what + " for " + o.image + " " + *ended);
      if (tcp && ended->find("Address already in use") != std::string::npos) {
        st = st.WithSuffix(PortHint(o));
      }
      return st;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::IOError(what + " for " + o.image + " does not accept connections" +
                             (tcp ? " at " + probe + ":" + port : "") + " after 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::make_unique<HostQemuNbdServer>(std::move(process), what);
}

Result<std::unique_ptr<QemuNbdServer>> QemuNbdServer::Start(const QemuNbdOptions& o) {
  const std::vector<std::string> argv = Argv(o);
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child,
                       ChildProcess::Start(argv, o.log_path, o.die_with_thread));
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!AcceptsUnix(o.socket)) {
    if (auto ended = child->Exited()) {
      return Status::IOError("qemu-nbd on " + o.image + " " + *ended + ": " +
                             child->LastStderrLine());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::IOError("qemu-nbd on " + o.image + " does not listen on " + o.socket +
                             " after 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::unique_ptr<QemuNbdServer>(new QemuNbdServer(std::move(child), o.socket));
}

}  // namespace backupfs
