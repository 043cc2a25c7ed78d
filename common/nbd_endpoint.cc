#include "common/nbd_endpoint.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <string_view>

namespace backupfs {
namespace {

std::string LibnbdError() {
  const char* text = nbd_get_error();
  return text != nullptr ? text : "unknown libnbd error";
}

// gnutls' words for a peer certificate that failed verification, as libnbd quotes them
// ("gnutls_handshake: Error in the certificate verification. (15/1)").
bool IsVerificationFailure(std::string_view error) {
  return error.find("certificate verification") != std::string_view::npos ||
         error.find("certificate is not trusted") != std::string_view::npos ||
         error.find("does not match") != std::string_view::npos;
}

Status SetUpTls(nbd_handle* h, const NbdEndpoint& e) {
  const std::string ca = e.tls_dir + "/ca-cert.pem";
  struct stat st;
  if (::stat(ca.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("NBD over TLS to " + e.Describe() + ": --tls-cert " + e.tls_dir +
                                   " lacks ca-cert.pem (the CA that signed the " +
                                   "server's certificate)");
  }
  if (nbd_set_tls(h, LIBNBD_TLS_REQUIRE) == -1 ||
      nbd_set_tls_certificates(h, e.tls_dir.c_str()) == -1 ||
      nbd_set_tls_verify_peer(h, true) == -1) {
    return Status::IOError("setting up TLS for " + e.Describe() + " with " + e.tls_dir + ": " +
                           LibnbdError());
  }
  return Status::Ok();
}

Status PrepareTcp(nbd_handle* h, const NbdEndpoint& e) {
  if (e.host.empty() || e.port == 0 || e.port > 65535) {
    return Status::InvalidArgument("NBD endpoint " + e.Describe() + " needs a host and a port");
  }
  if (e.tls) BFS_RETURN_IF_ERROR(SetUpTls(h, e));
  return Status::Ok();
}

}  // namespace

std::string NbdEndpoint::Describe() const {
  if (!tcp()) return "unix socket " + socket;
  // An IPv6 address is bracketed so that the port stays readable.
  const std::string address = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return address + ":" + std::to_string(port) + (tls ? " (TLS)" : "");
}

Status NbdConnectError(const NbdEndpoint& e, const std::string& libnbd_error) {
  if (e.tls && IsVerificationFailure(libnbd_error)) {
    return Status::IOError("connecting to NBD " + e.Describe() +
                           ": the server's certificate did not verify against " + e.tls_dir +
                           "/ca-cert.pem (is it signed by that CA, and does it name " + e.host +
                           "?): " + libnbd_error);
  }
  return Status::IOError("connecting to NBD " + e.Describe() + ": " + libnbd_error);
}

Status StartNbdConnect(nbd_handle* h, const NbdEndpoint& e) {
  if (!e.tcp()) {
    if (nbd_aio_connect_unix(h, e.socket.c_str()) == -1) {
      return NbdConnectError(e, LibnbdError());
    }
    return Status::Ok();
  }
  BFS_RETURN_IF_ERROR(PrepareTcp(h, e));
  if (nbd_aio_connect_tcp(h, e.host.c_str(), std::to_string(e.port).c_str()) == -1) {
    return NbdConnectError(e, LibnbdError());
  }
  return Status::Ok();
}

Status FinishNbdConnect(nbd_handle* h, const NbdEndpoint& e) {
  if (!e.tcp()) return Status::Ok();
  // Requests are small writes sent while earlier ones are unanswered: Nagle's algorithm may
  // hold one back until the server acknowledges the previous. QEMU's own NBD client turns it
  // off too. (No difference measured on loopback, where ACKs come at once.)
  const int fd = nbd_aio_get_fd(h);
  const int on = 1;
  if (fd == -1 || ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) {
    return Status::FromErrno("setting TCP_NODELAY on the connection to NBD " + e.Describe(), errno);
  }
  return Status::Ok();
}

Status ConnectNbd(nbd_handle* h, const NbdEndpoint& e) {
  if (!e.tcp()) {
    if (nbd_connect_unix(h, e.socket.c_str()) == -1) return NbdConnectError(e, LibnbdError());
    return Status::Ok();
  }
  BFS_RETURN_IF_ERROR(PrepareTcp(h, e));
  if (nbd_connect_tcp(h, e.host.c_str(), std::to_string(e.port).c_str()) == -1) {
    return NbdConnectError(e, LibnbdError());
  }
  return FinishNbdConnect(h, e);
}

}  // namespace backupfs
