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
  std::vector<std::string> argv = {"qemu-nbd", "--persistent", "--shared=0", "--socket=" + o.socket,
                                   "--export-name=" + o.export_name};
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
