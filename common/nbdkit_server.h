// An nbdkit server on one raw image (its file plugin): how `backupfs-restore -a export` serves
// a restore point's disk from the mounted saveset. qemu-nbd on the same fresh mount reads as
// fast (bench/RESULTS-instant.md); nbdkit brings what an export needs: --exit-with-parent (no
// server outlives a killed export) and the cow filter for writable exports, whose writes land
// in an unlinked temporary overlay, so nothing of them remains once nbdkit is gone.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/subprocess.h"
#include "stream/status.h"

namespace backupfs {

struct NbdkitOptions {
  std::string image;        // a raw image
  std::string export_name;  // what clients ask for
  std::string socket;       // a unix socket to create, or "" for:
  std::string tcp_host;     // a TCP address
  std::string tcp_port;
  bool writable = false;  // copy-on-write, discarded at exit
  std::string log_path;   // nbdkit's stderr
  // TCP only: "" for plain NBD; else TLS required, with nbdkit's x509 files in this
  // directory (ca-cert.pem, server-cert.pem, server-key.pem).
  std::string tls_certificates;
};

class NbdkitServer {
 public:
  // Starts nbdkit (it exits with the calling thread, or its parent) and returns once it
  // accepts connections; one that exits or does not listen within 30 s is an error quoting its
  // last stderr line.
  static Result<std::unique_ptr<NbdkitServer>> Start(const NbdkitOptions& options);
  const std::string& address() const { return address_; }
  // nullopt while it serves; else how it ended, with its last complaint.
  std::optional<std::string> Exited();
  Status Stop() { return child_->Stop("nbdkit on " + address_); }

 private:
  NbdkitServer(std::unique_ptr<ChildProcess> child, std::string address)
      : child_(std::move(child)), address_(std::move(address)) {}
  std::unique_ptr<ChildProcess> child_;
  std::string address_;
};

// An nbdkit that outlives us (remote instant recovery: a domain on another host reads from it
// after our command ended): read-only, on TCP, in the background (nbdkit's own daemon mode:
// it binds, forks, and the background process writes `pid_file`; its later messages go to
// syslog, `log_path` is unused).
// Returns its pid once it listens. A port in use is a FailedPrecondition naming the address
// and port; other failures quote nbdkit's complaint.
Result<pid_t> StartDetachedNbdkit(const NbdkitOptions& options, const std::string& pid_file);

// Whether `pid` is an nbdkit serving `image` (a pid recorded earlier may have been reused).
bool IsNbdkitServing(pid_t pid, const std::string& image);

// Stops the detached nbdkit `pid` serving `image` (SIGTERM; SIGKILL after 10 s) and waits
// until it is gone. Ok when it is gone already or the pid is no longer such an nbdkit.
Status StopDetachedNbdkit(pid_t pid, const std::string& image);

}  // namespace backupfs
