#include "common/nbd_image_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/subprocess.h"
#include "stream/file.h"

namespace backupfs {
namespace {

std::string ParentDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

Result<std::unique_ptr<NbdImageWriter>> NbdImageWriter::Create(const NbdImageOptions& options) {
  std::unique_ptr<NbdImageWriter> w(new NbdImageWriter(options));
  BFS_RETURN_IF_ERROR(w->CreateImage());
  BFS_RETURN_IF_ERROR(w->StartServer());
  BFS_RETURN_IF_ERROR(w->Connect());
  return w;
}

NbdImageWriter::~NbdImageWriter() {
  conns_.clear();
  server_.reset();  // SIGTERM: nothing of an unfinished image is kept anyway
  remote_server_.reset();
  if (remote()) {
    RemoveRemoteLeftovers();
    return;
  }
  if (created_ && !finished_) unlink(partial().c_str());
  if (!options_.socket.empty()) {
    unlink(options_.socket.c_str());
    unlink((options_.socket + ".log").c_str());
  }
}

// Best effort: the partial image of a writer that did not finish.
void NbdImageWriter::RemoveRemoteLeftovers() {
  if (created_ && !finished_) (void)options_.host->Remove(partial());
}

// O_EXCL claims the name first: qemu-img would silently truncate an existing file.
Status NbdImageWriter::ClaimLocal() {
  UniqueFd claim(open(partial().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!claim.valid()) return Status::FromErrno("cannot create " + partial(), errno);
  created_ = true;
  return Status::Ok();
}

// The plan checked the name is free; checked again right before qemu-img would truncate it.
Status NbdImageWriter::ClaimRemote() {
  BFS_ASSIGN_OR_RETURN(bool exists, options_.host->Exists(partial()));
  if (exists) {
    return Status::FailedPrecondition(options_.host->name() + ": " + partial() +
                                      " exists (another restore into the same directory?)");
  }
  created_ = true;
  return Status::Ok();
}

Status NbdImageWriter::CreateImage() {
  BFS_RETURN_IF_ERROR(remote() ? ClaimRemote() : ClaimLocal());
  std::string opts = "size=" + std::to_string(options_.size);
  if (options_.preallocate) opts += ",preallocation=full";
  for (const std::string& o : options_.create_options) opts += "," + o;
  const std::vector<std::string> argv = {"qemu-img",      "create", "-q", "-f",
                                         options_.format, "-o",     opts, partial()};
  if (remote()) {
    auto out = options_.host->RunChecked(argv);
    if (!out.ok()) return out.status().WithPrefix("cannot create " + partial());
    return Status::Ok();
  }
  auto out = RunCapture(argv);
  if (!out.ok())
    return Status::IOError("cannot create " + partial() + ": " + out.status().message());
  return Status::Ok();
}

Status NbdImageWriter::StartServer() {
  if (remote()) return StartRemoteServer();

  QemuNbdOptions q;
  q.image = partial();
  q.format = options_.format;
  q.socket = options_.socket;
  q.export_name = options_.export_name;
  q.log_path = options_.socket + ".log";  // kept until the end: Stop() quotes its last line
  q.writable = true;
  q.compress = options_.compress;
  q.die_with_thread = true;  // the writer, and so the server, never outlive this thread
  auto server = QemuNbdServer::Start(q);
  if (!server.ok()) return server.status();
  server_ = std::move(server).value();
  return Status::Ok();
}

// qemu-nbd on the host, listening on TCP (TLS with the host's x509 files); returns once it
// accepts connections. A port another program holds is an error naming the host and port.
Status NbdImageWriter::StartRemoteServer() {
  const NbdTcpExport& t = options_.tcp;
  QemuNbdOptions q;
  q.image = partial();
  q.format = options_.format;
  q.export_name = options_.export_name;
  q.writable = true;
  q.compress = options_.compress;
  q.tcp_address = t.address;
  q.tcp_port = t.port;
  q.tls_dir = t.server_tls_dir;
  q.tls_verify_peer = t.verify_client;
  BFS_ASSIGN_OR_RETURN(remote_server_, StartQemuNbdOn(*options_.host, q));
  return Status::Ok();
}

Status NbdImageWriter::Connect() {
  for (unsigned i = 0; i < std::max(1u, options_.connections); ++i) {
    Handle h(nbd_create());
    if (!h) return Status::IOError(std::string("nbd_create: ") + nbd_get_error());
    if (nbd_set_export_name(h.get(), options_.export_name.c_str()) == -1) {
      return Status::IOError(std::string("nbd_set_export_name: ") + nbd_get_error());
    }
    if (remote()) {
      Status s = ConnectNbd(h.get(), options_.tcp.client);
      if (!s.ok()) {
        return s.WithPrefix("cannot connect to qemu-nbd on " + options_.host->name() + " for " +
                            partial());
      }
    } else if (nbd_connect_unix(h.get(), options_.socket.c_str()) == -1) {
      return Status::IOError("cannot connect to qemu-nbd for " + partial() + ": " +
                             nbd_get_error());
    }
    conns_.push_back(std::move(h));
  }
  return Status::Ok();
}

Status NbdImageWriter::NbdError(const std::string& what, uint64_t offset) const {
  const int err = nbd_get_errno();
  // A remote image is named with its host, and the endpoint (a cut network shows there).
  const std::string image = remote() ? options_.host->name() + ":" + partial() : partial();
  std::string msg = "cannot " + what + " " + image + " at offset " + std::to_string(offset) +
                    (remote() ? " over NBD " + options_.tcp.client.Describe() : "") + ": " +
                    nbd_get_error();
  return err == ENOSPC ? Status::FromErrno(msg, ENOSPC) : Status::IOError(msg);
}

Status NbdImageWriter::Write(unsigned lane, uint64_t offset, std::span<const uint8_t> bytes) {
  if (nbd_pwrite(conns_[lane].get(), bytes.data(), bytes.size(), offset, 0) == -1) {
    return NbdError("write", offset);
  }
  return Status::Ok();
}

Status NbdImageWriter::Zero(unsigned lane, uint64_t offset, uint64_t length) {
  if (nbd_zero(conns_[lane].get(), length, offset, 0) == -1) return NbdError("zero", offset);
  return Status::Ok();
}

Status NbdImageWriter::Finish() {
  // Every connection flushes what it wrote; qemu-nbd then closes the image (its metadata
  // caches written back) before the file is fsynced and renamed.
  for (auto& h : conns_) {
    if (nbd_flush(h.get(), 0) == -1) return NbdError("flush", 0);
  }
  for (auto& h : conns_) nbd_shutdown(h.get(), 0);
  conns_.clear();
  if (remote()) return FinishRemote();
  BFS_RETURN_IF_ERROR(server_->Stop());
  server_.reset();
  BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(partial(), O_RDONLY));
  BFS_RETURN_IF_ERROR(FsyncFile(fd.get(), partial()));
  if (rename(partial().c_str(), options_.path.c_str()) != 0) {
    return Status::FromErrno("cannot rename " + partial(), errno);
  }
  finished_ = true;
  return FsyncParentDir(options_.path);
}

Status NbdImageWriter::FinishRemote() {
  Host& host = *options_.host;
  BFS_RETURN_IF_ERROR(remote_server_->Stop());
  remote_server_.reset();
  BFS_RETURN_IF_ERROR(host.Sync(partial()));
  BFS_RETURN_IF_ERROR(host.Rename(partial(), options_.path));
  finished_ = true;
  return host.Sync(ParentDir(options_.path));
}

}  // namespace backupfs
