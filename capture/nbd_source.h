// One connection to an NBD export: on a unix socket (libvirt's pull-mode backup, qemu-nbd) or
// over TCP, plain or TLS (a remote hypervisor's export).
//
// Owns the libnbd handle. Not thread-safe: one thread uses a source (and its handle) at a time.
#pragma once

#include <libnbd.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/nbd_endpoint.h"
#include "stream/status.h"

namespace backupfs {

// QEMU's maximum request size, assumed when the server does not say.
inline constexpr uint64_t kDefaultNbdMaxBlock = 32u << 20;
inline constexpr char kBaseAllocation[] = "base:allocation";

// Connections to libvirt's pull-mode export that must stay open until the backup job has
// ended. QEMU 7.2 aborts the domain (blockdev-nbd.c:62, `qemu_in_main_thread()`) when a client
// disconnects from the export of a disk that runs in an iothread: it handles the disconnect in
// that iothread. Once the job has ended, QEMU has closed the connections itself from its main
// loop, and closing our ends is harmless (measured here: a client that disconnects first
// crashes the domain every time; one that stays connected past the job's end never does).
class NbdHandlePark {
 public:
  NbdHandlePark() = default;
  NbdHandlePark(const NbdHandlePark&) = delete;
  NbdHandlePark& operator=(const NbdHandlePark&) = delete;
  ~NbdHandlePark() { CloseAll(); }

  void Keep(nbd_handle* handle);  // thread-safe; takes ownership
  void CloseAll();
  size_t size() const;  // connections held

 private:
  mutable std::mutex mu_;
  std::vector<nbd_handle*> handles_;
};

struct NbdConnectOptions {
  NbdEndpoint endpoint;     // the unix socket, or TCP host:port (and TLS)
  std::string export_name;  // e.g. "vda" for libvirt, "" for qemu-nbd's default
  bool allocation = true;   // request base:allocation
  // A dirty-bitmap context to request, e.g. "qemu:dirty-bitmap:backup-vda"; "" for none.
  std::string dirty_context;
  // When set, the connection is handed to it rather than closed when the source goes away,
  // on every path (failed negotiation included). Every connection made from these options
  // (the copy's extra connections too) goes there.
  NbdHandlePark* park = nullptr;
};

class NbdSource {
 public:
  // Connects and checks that the server agreed to every requested meta context.
  static Result<NbdSource> Connect(const NbdConnectOptions& options);
  // Connect in two halves, for a poll loop of the caller's that drives the handshake (see
  // StartNbdConnect): StartConnect begins it; once nbd_aio_is_ready(handle()), FinishConnect
  // checks the contexts and reads the sizes. Until then only handle() and name() are valid.
  static Result<NbdSource> StartConnect(const NbdConnectOptions& options);
  Status FinishConnect();

  nbd_handle* handle() const { return handle_.get(); }
  uint64_t size() const { return size_; }
  bool can_multi_conn() const { return can_multi_conn_; }
  // The largest read the server accepts (kDefaultNbdMaxBlock when it does not say).
  uint64_t max_block() const { return max_block_; }
  const NbdConnectOptions& options() const { return options_; }
  // "export 'vda' on unix socket /run/sock", "export 'vda' on 127.0.0.2:10809", for messages.
  const std::string& name() const { return name_; }

  // An IOError "<what> on <name()>: <nbd_get_error()>", for a libnbd call that just failed.
  Status Error(const std::string& what) const;

 private:
  struct Closer {
    NbdHandlePark* park = nullptr;
    void operator()(nbd_handle* h) const {
      if (park != nullptr) {
        park->Keep(h);
      } else {
        nbd_close(h);
      }
    }
  };
  NbdSource(std::unique_ptr<nbd_handle, Closer> handle, NbdConnectOptions options);
  Status Prepare();
  Status Negotiate();
  Status CheckContext(const std::string& context) const;
  Status ReadSizes();

  std::unique_ptr<nbd_handle, Closer> handle_;
  NbdConnectOptions options_;
  std::string name_;
  uint64_t size_ = 0;
  bool can_multi_conn_ = false;
  uint64_t max_block_ = kDefaultNbdMaxBlock;
};

}  // namespace backupfs
