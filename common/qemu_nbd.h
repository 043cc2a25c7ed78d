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

#include "common/host.h"
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
  // Listening on TCP instead of `socket` (a remote hypervisor; see StartQemuNbdOn):
  // --bind=tcp_address --port=tcp_port.
  std::string tcp_address = {};
  unsigned tcp_port = 0;
  // TLS on the TCP export: x509 files in tls_dir (ca-cert.pem, server-cert.pem,
  // server-key.pem, as libvirt's backup_tls_x509_cert_dir); with tls_verify_peer, clients
  // must show a certificate that the CA signed.
  std::string tls_dir = {};
  bool tls_verify_peer = false;
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

// A qemu-nbd server started through a Host (this machine or a hypervisor over ssh). A remote
// one ends when the ssh connection drops; the destructor stops it.
class HostQemuNbdServer {
 public:
  HostQemuNbdServer(std::unique_ptr<HostProcess> process, std::string what)
      : process_(std::move(process)), what_(std::move(what)) {}
  // "qemu-nbd on host 127.0.0.2 (127.0.0.2:10809)", for messages.
  const std::string& what() const { return what_; }
  // nullopt while it serves; else how it ended, with its last stderr line.
  std::optional<std::string> Exited() { return process_->Exited(); }
  // Stops it; for a writable one, Ok means qemu-nbd flushed and closed the image.
  Status Stop() { return process_->Stop(what_); }

 private:
  std::unique_ptr<HostProcess> process_;
  std::string what_;
};

// Starts qemu-nbd on `host` (options.socket on this machine, or options.tcp_address/tcp_port
// with optional TLS) and returns once it accepts connections: TCP is probed from here at
// `probe_address` (default: tcp_address, or the host's address when that is a wildcard).
// A port already in use, a server that exits or one that does not listen within 30 s is an
// error naming the host, the port and qemu-nbd's last stderr line.
Result<std::unique_ptr<HostQemuNbdServer>> StartQemuNbdOn(Host& host, const QemuNbdOptions& options,
                                                          const std::string& probe_address = "");

// The context qemu-nbd offers for `bitmap`.
inline std::string QemuNbdDirtyContext(const std::string& bitmap) {
  return "qemu:dirty-bitmap:" + bitmap;
}

}  // namespace backupfs
