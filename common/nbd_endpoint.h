// Where an NBD export is and how to connect to it: a unix socket on this machine, or TCP
// (plain or TLS) to a hypervisor. Shared by the capture reader and the restore writer.
#pragma once

#include <libnbd.h>

#include <string>

#include "stream/status.h"

namespace backupfs {

struct NbdEndpoint {
  std::string socket;  // a unix socket; "" for TCP
  std::string host;    // TCP: address or name to connect to
  unsigned port = 0;   // TCP
  // TLS with x509 certificates in `tls_dir` (ca-cert.pem, and client-cert.pem/client-key.pem
  // when the server asks for a client certificate); the server's certificate must verify
  // against the CA and name `host`.
  bool tls = false;
  std::string tls_dir;

  bool tcp() const { return socket.empty(); }
  // "unix socket /run/x.sock", "127.0.0.2:10809", "127.0.0.2:10809 (TLS)".
  std::string Describe() const;
};

// Sets up TLS on `h` as `e` asks (before connecting); then connects. Errors name the endpoint
// and quote libnbd ("the server's certificate does not verify against <dir>/ca-cert.pem").
Status ConnectNbd(nbd_handle* h, const NbdEndpoint& e);

// ConnectNbd in two halves, for a connection whose handshake a poll loop of the caller's
// drives (nbd_aio_get_fd, nbd_aio_get_direction, nbd_aio_notify_read/write): Start sets up
// TLS and begins connecting; once nbd_aio_is_ready(h), Finish applies the per-connection
// settings. NbdConnectError turns nbd_get_error() of a failed handshake into ConnectNbd's
// message.
Status StartNbdConnect(nbd_handle* h, const NbdEndpoint& e);
Status FinishNbdConnect(nbd_handle* h, const NbdEndpoint& e);
Status NbdConnectError(const NbdEndpoint& e, const std::string& libnbd_error);

}  // namespace backupfs
