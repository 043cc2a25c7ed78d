#include "capture/transport.h"

#include "common/host_tls.h"

namespace backupfs {

namespace {

NbdEndpoint UnixEndpoint(std::string socket) {
  NbdEndpoint e;
  e.socket = std::move(socket);
  return e;
}

}  // namespace

Result<std::unique_ptr<CaptureTransport>> CaptureTransport::Connect(const BackupOptions& o) {
  if (o.remote.remote() && !o.socket_file.empty()) {
    return Status::InvalidArgument("-f " + o.socket_file +
                                   " names a unix socket, but the export of a remote domain " +
                                   "listens on TCP: drop -f (-I and -P say where it listens)");
  }
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<Host> host, ConnectHost(o.remote));
  return std::unique_ptr<CaptureTransport>(new CaptureTransport(o, std::move(host)));
}

Status CaptureTransport::CreateWorkDir() {
  BFS_ASSIGN_OR_RETURN(work_, WorkDir::Create(*host_, o_.scratch_dir));
  return Status::Ok();
}

JobServer CaptureTransport::JobExport() const {
  if (!remote()) {
    return JobServer::Unix(o_.socket_file.empty() ? work_->path() + "/nbd.sock" : o_.socket_file);
  }
  return JobServer::Tcp(o_.remote.nbd_ip, o_.remote.nbd_port, o_.remote.tls);
}

NbdEndpoint CaptureTransport::JobEndpoint() const {
  if (!remote()) return UnixEndpoint(JobExport().socket);
  return o_.remote.ClientEndpoint(o_.remote.nbd_port);
}

QemuNbdOptions CaptureTransport::OfflineServer(const DomainDisk& d, size_t index,
                                               const std::string& bitmap) const {
  QemuNbdOptions q;
  q.image = d.source;
  q.format = d.format;
  q.export_name = d.target;
  q.bitmap = bitmap;
  q.log_path = work_->path() + "/qemu-nbd." + d.target + ".log";
  if (!remote()) {
    q.socket = (o_.socket_file.empty() ? work_->path() + "/nbd" : o_.socket_file) + "." + d.target;
    return q;
  }
  q.tcp_address = o_.remote.nbd_ip;
  q.tcp_port = o_.remote.nbd_port + static_cast<unsigned>(index);
  if (o_.remote.tls) {
    q.tls_dir = tls_.dir;
    q.tls_verify_peer = tls_.verify;
  }
  return q;
}

// Where the client reaches the server `q` describes.
NbdEndpoint CaptureTransport::OfflineEndpoint(const QemuNbdOptions& q) const {
  if (!remote()) return UnixEndpoint(q.socket);
  return o_.remote.ClientEndpoint(q.tcp_port);
}

Result<std::vector<NbdEndpoint>> CaptureTransport::ServeOffline(
    const std::vector<DomainDisk>& disks, const std::string& bitmap, RunLog& log) {
  // Our qemu-nbd serves TLS as the host's libvirt has its QEMU do (qemu.conf).
  if (remote() && o_.remote.tls) tls_ = ReadHostTls(*host_);
  std::vector<NbdEndpoint> out;
  for (size_t i = 0; i < disks.size(); i++) {
    const DomainDisk& d = disks[i];
    const QemuNbdOptions q = OfflineServer(d, i, bitmap);
    log.Info("disk " + d.target + ": starting qemu-nbd on " + host_->name() + " for " + d.source +
             (bitmap.empty() ? "" : ", bitmap " + bitmap) +
             (q.tcp_port != 0 ? ", port " + std::to_string(q.tcp_port) : ""));
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<HostQemuNbdServer> server, StartQemuNbdOn(*host_, q));
    offline_.push_back(std::move(server));
    out.push_back(OfflineEndpoint(q));
  }
  return out;
}

}  // namespace backupfs
