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

}  // namespace backupfs
