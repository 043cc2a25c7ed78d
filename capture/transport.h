// How a capture run reaches the domain's hypervisor. The run's plan (disks, chain step, files)
// is the same either way; the transport says where the job's NBD export listens and how our
// client reaches it, where the scratch files go, how a shut-off domain's images are served,
// and through which Host images and firmware files are read.
//
// Local: a work directory under --scratchdir with the export's unix socket in it (or -f), and
// qemu-nbd on unix sockets. Remote (-U qemu+ssh://host/...): the export on TCP at -I:-P (TLS
// with --tls, verified against --tls-cert), the work directory and qemu-nbd on the remote host
// through ssh, the client connecting to --nbd-connect when set (a proxy, port forward or NAT).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "capture/backup.h"
#include "capture/backup_job.h"
#include "capture/checkpoints.h"
#include "common/domain_xml.h"
#include "common/host.h"
#include "common/host_tls.h"
#include "common/nbd_endpoint.h"
#include "common/qemu_nbd.h"
#include "common/run_log.h"

namespace backupfs {

class CaptureTransport {
 public:
  // Reaches the host of `o.remote` (ssh for a remote one). `o` must outlive the transport.
  static Result<std::unique_ptr<CaptureTransport>> Connect(const BackupOptions& o);

  Host& host() { return *host_; }
  bool remote() const { return host_->remote(); }

  // Creates the run's work directory on the hypervisor (before a job or offline servers).
  Status CreateWorkDir();
  const std::string& work_dir() const { return work_->path(); }
  // Removes it (also done when the transport goes).
  void RemoveWorkDir() { work_.reset(); }

  // The job's <server>, and where our client connects to its export of disk `target`.
  JobServer JobExport() const;
  NbdEndpoint JobEndpoint() const;

  // Serves each of a shut-off domain's `disks` (their bitmap `bitmap` for inc/diff, "" for
  // none) with qemu-nbd on the hypervisor, one server per disk (remote: ports -P, -P+1, ...);
  // returns where each is reached, in order. The servers run until StopOffline() or the end
  // of the transport.
  Result<std::vector<NbdEndpoint>> ServeOffline(const std::vector<DomainDisk>& disks,
                                                const std::string& bitmap, RunLog& log);
  void StopOffline() { offline_.clear(); }

 private:
  CaptureTransport(const BackupOptions& o, std::unique_ptr<Host> host)
      : o_(o), host_(std::move(host)) {}
  QemuNbdOptions OfflineServer(const DomainDisk& d, size_t index, const std::string& bitmap) const;
  NbdEndpoint OfflineEndpoint(const QemuNbdOptions& q) const;

  const BackupOptions& o_;
  std::unique_ptr<Host> host_;
  HostTls tls_;  // the host's libvirt x509 setup, read for offline servers with --tls
  // Declared after host_: the servers and the directory go first, while the host is reachable.
  std::unique_ptr<WorkDir> work_;
  std::vector<std::unique_ptr<HostQemuNbdServer>> offline_;
};

}  // namespace backupfs
