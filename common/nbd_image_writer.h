// A new disk image (qcow2 by default) written through qemu-nbd: `qemu-img create` makes
// `<path>.partial` with the requested options, a writable qemu-nbd serves it, and each lane
// writes over its own libnbd connection, so that several requests are in flight while QEMU's
// block layer allocates clusters. Finish() flushes every connection, stops qemu-nbd (which
// closes the image cleanly), fsyncs the file and renames it into place.
//
// The image lives on a Host. On this machine qemu-nbd serves it on a unix socket; on a remote
// host (`tcp` set), qemu-img and qemu-nbd run there over ssh, qemu-nbd listens on TCP (TLS
// with the host's x509 files when asked) and the lanes connect over the network. Either way a
// writer that does not finish removes the partial image from its host.
//
// A new image reads as zeros: only data is written, and everything else stays unallocated
// (thin), unless `preallocate` asked for a fully allocated file.
#pragma once

#include <libnbd.h>

#include <memory>
#include <string>
#include <vector>

#include "common/host.h"
#include "common/image_writer.h"
#include "common/nbd_endpoint.h"
#include "common/qemu_nbd.h"

namespace backupfs {

// Where a remote qemu-nbd listens, and where this side connects to it.
struct NbdTcpExport {
  std::string address;  // what qemu-nbd binds on the host (-I/--nbd-ip)
  unsigned port = 0;    // -P/--nbd-port; in use by another program: an error naming it
  // TLS: the host's x509 directory (server-cert.pem, server-key.pem, ca-cert.pem); "" = plain.
  std::string server_tls_dir;
  bool verify_client = false;  // ask the client for a certificate signed by the CA
  NbdEndpoint client;          // where the lanes connect (the export, or --nbd-connect)
};

struct NbdImageOptions {
  std::string path;                         // final name; written as path + ".partial"
  std::string format;                       // qemu-img's: "qcow2", "raw"
  uint64_t size = 0;                        // virtual size
  std::vector<std::string> create_options;  // qemu-img create -o values, e.g. "cluster_size=65536"
  bool preallocate = false;                 // preallocation=full, as virtnbdrestore's -A
  bool compress = false;                    // compressed qcow2 clusters
  // The machine the image is written on (nullptr: this one); must outlive the writer. A
  // remote host needs `tcp`.
  Host* host = nullptr;
  std::string socket;  // this machine: unix socket for qemu-nbd (must not exist)
  NbdTcpExport tcp;    // a remote host
  std::string export_name = "restore";
  unsigned connections = 4;
};

class NbdImageWriter final : public ImageWriter {
 public:
  // Creates the partial image and connects; any failure removes what was created.
  static Result<std::unique_ptr<NbdImageWriter>> Create(const NbdImageOptions& options);
  ~NbdImageWriter() override;
  NbdImageWriter(const NbdImageWriter&) = delete;
  NbdImageWriter& operator=(const NbdImageWriter&) = delete;

  unsigned lanes() const override { return static_cast<unsigned>(conns_.size()); }
  Status Write(unsigned lane, uint64_t offset, std::span<const uint8_t> bytes) override;
  Status Zero(unsigned lane, uint64_t offset, uint64_t length) override;
  bool zeroed_at_start() const override { return true; }
  Status Finish() override;
  const std::string& path() const override { return options_.path; }

 private:
  struct Closer {
    void operator()(nbd_handle* h) const { nbd_close(h); }
  };
  using Handle = std::unique_ptr<nbd_handle, Closer>;

  explicit NbdImageWriter(NbdImageOptions options) : options_(std::move(options)) {}
  std::string partial() const { return options_.path + ".partial"; }
  bool remote() const { return options_.host != nullptr && options_.host->remote(); }
  Status CreateImage();
  Status ClaimLocal();
  Status ClaimRemote();
  Status StartServer();
  Status StartRemoteServer();
  Status Connect();
  Status NbdError(const std::string& what, uint64_t offset) const;
  Status FinishRemote();
  void RemoveRemoteLeftovers();

  const NbdImageOptions options_;
  bool created_ = false;
  bool finished_ = false;
  std::unique_ptr<QemuNbdServer> server_;             // this machine
  std::unique_ptr<HostQemuNbdServer> remote_server_;  // a remote host
  std::vector<Handle> conns_;  // one per lane; a lane is used by one thread at a time
};

}  // namespace backupfs
