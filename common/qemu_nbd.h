// A qemu-nbd server on a disk image: read-only for offline backups, writable for restores.
//
// Read-only (the default): the image's own format, one unix socket per disk; with a bitmap
// name the export also offers `qemu:dirty-bitmap:<bitmap>` (the persistent bitmap libvirt keeps
// for a checkpoint), which is how virtnbdbackup reads inc/diff backups of shut-off domains.
// qemu-nbd takes the image's lock, so a domain started meanwhile fails to start rather than
// change the image under the backup.
// Writable (restore): any number of connections; `compress` puts QEMU's compress filter over
// the image, so every write lands as compressed qcow2 clusters.
// The owner stops the server (Stop() to learn whether it closed the image cleanly).
#pragma once

#include <memory>
#include <string>

#include "common/subprocess.h"
#include "stream/status.h"

namespace backupfs {

struct QemuNbdOptions {
  std::string image;        // the disk's source file
  std::string format;       // "qcow2", "raw"
  std::string socket;       // unix socket to create
  std::string export_name;  // the disk's target dev, as in libvirt's exports
  std::string bitmap;       // "" for none
  std::string log_path;     // qemu-nbd's stderr
  bool writable = false;
  bool compress = false;         // with writable: QEMU's compress filter (qcow2 only)
  bool die_with_thread = false;  // see ChildProcess::Start
};

class QemuNbdServer {
 public:
  // Starts qemu-nbd and returns once the socket accepts connections; a server that exits or
  // does not listen within 30 s is an error quoting its last stderr line.
  static Result<std::unique_ptr<QemuNbdServer>> Start(const QemuNbdOptions& options);
  const std::string& socket() const { return socket_; }
  // Stops the server; for a writable one, Ok means qemu-nbd flushed and closed the image.
  Status Stop() { return child_->Stop("qemu-nbd on " + socket_); }

 private:
  QemuNbdServer(std::unique_ptr<ChildProcess> child, std::string socket)
      : child_(std::move(child)), socket_(std::move(socket)) {}
  std::unique_ptr<ChildProcess> child_;
  std::string socket_;
};

// The context qemu-nbd offers for `bitmap`.
inline std::string QemuNbdDirtyContext(const std::string& bitmap) {
  return "qemu:dirty-bitmap:" + bitmap;
}

}  // namespace backupfs
