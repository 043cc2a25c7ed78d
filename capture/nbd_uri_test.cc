// How an NBD endpoint is named in messages and in the URIs given to libnbd's tools.
#include <gtest/gtest.h>

#include "capture/nbdinfo_map.h"
#include "common/nbd_endpoint.h"

namespace backupfs {
namespace {

NbdEndpoint Tcp(const std::string& host, unsigned port, const std::string& tls_dir = "") {
  NbdEndpoint e;
  e.host = host;
  e.port = port;
  e.tls = !tls_dir.empty();
  e.tls_dir = tls_dir;
  return e;
}

TEST(NbdEndpointTest, DescribesSocketsAndTcp) {
  NbdEndpoint unix_socket;
  unix_socket.socket = "/run/x.sock";
  EXPECT_EQ(unix_socket.Describe(), "unix socket /run/x.sock");
  EXPECT_EQ(Tcp("127.0.0.2", 10809).Describe(), "127.0.0.2:10809");
  EXPECT_EQ(Tcp("127.0.0.2", 10809, "/etc/pki/qemu").Describe(), "127.0.0.2:10809 (TLS)");
  EXPECT_EQ(Tcp("::1", 10809).Describe(), "[::1]:10809");
}

TEST(NbdUriTest, UnixTcpAndTls) {
  NbdEndpoint unix_socket;
  unix_socket.socket = "/var/tmp/a b.sock";
  EXPECT_EQ(NbdUri("vda", unix_socket), "nbd+unix:///vda?socket=/var/tmp/a%20b.sock");
  EXPECT_EQ(NbdUri("vda", Tcp("127.0.0.2", 10809)), "nbd://127.0.0.2:10809/vda");
  EXPECT_EQ(NbdUri("sd a", Tcp("hv1.example", 10809)), "nbd://hv1.example:10809/sd%20a");
  EXPECT_EQ(NbdUri("vda", Tcp("::1", 10809)), "nbd://[::1]:10809/vda");
  EXPECT_EQ(NbdUri("vda", Tcp("127.0.0.2", 10809, "/etc/pki/my qemu")),
            "nbds://127.0.0.2:10809/vda?tls-certificates=/etc/pki/my%20qemu");
}

TEST(NbdEndpointTest, TcpWithoutAPortIsRefused) {
  std::unique_ptr<nbd_handle, decltype(&nbd_close)> h(nbd_create(), &nbd_close);
  Status s = ConnectNbd(h.get(), Tcp("127.0.0.2", 0));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "NBD endpoint 127.0.0.2:0 needs a host and a port");
}

}  // namespace
}  // namespace backupfs
