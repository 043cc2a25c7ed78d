// The capture reader over TCP: a real qemu-nbd on 127.0.0.2, plain and with TLS (a CA and
// certificates made here by certtool), and through tests/tools/delay_proxy.py (5 ms each
// way, multi-conn, a network cut by SIGUSR1). Every read is checked byte for byte.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "capture/block_status.h"
#include "capture/extents.h"
#include "capture/nbd_copy.h"
#include "capture/nbd_source.h"
#include "capture/nbd_test_util.h"
#include "capture/nbdinfo_map.h"
#include "common/listening.h"
#include "stream/file.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

using testing::OnPath;
using testing::RunCommand;
using testing::Spawn;
using testing::StopChild;

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;
constexpr uint64_t kImageSize = 48 * MiB;
const std::string kServerIp = "127.0.0.2";
const std::string kProxyIp = "127.0.0.3";

// A port nobody listens on at `ip` right now (the kernel's pick; a race with other tests is
// possible but unlikely, and shows as a server that fails to start).
unsigned FreePort(const std::string& ip) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  socklen_t len = sizeof a;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Waits for `ready` to become true, failing if `pid` exits first or after 20 s.
template <typename Ready>
void WaitFor(pid_t pid, const std::string& what, Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!ready()) {
    ASSERT_EQ(::waitpid(pid, nullptr, WNOHANG), 0) << what << " exited";
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << what << " never got ready";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// The image: random data with holes between, so that the map has data and zero extents.
class NbdTcpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"qemu-nbd", "certtool", "python3"}) {
      if (!OnPath(p)) GTEST_SKIP() << p << " is not installed";
    }
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    raw_.assign(kImageSize, 0);
    for (uint64_t off = 0; off < kImageSize; off += 4 * MiB) {
      const uint64_t len = (off / (4 * MiB) % 3 + 1) * MiB;
      std::vector<uint8_t> bytes = testing::RandomBytes(len, off + 1);
      std::copy(bytes.begin(), bytes.end(), raw_.begin() + off);
    }
    testing::WriteFileBytes(image_, raw_);
    ASSERT_TRUE(RunCommand({"fallocate", "--dig-holes", image_}));
  }

  void TearDown() override {
    StopChild(proxy_);
    StopChild(server_);
  }

  // qemu-nbd on kServerIp, with TLS credentials from `tls_dir` when it is not empty.
  void StartServer(const std::string& tls_dir = "") {
    port_ = FreePort(kServerIp);
    ASSERT_NE(port_, 0u);
    std::vector<std::string> args{
        "qemu-nbd",      "--bind", kServerIp,      "--port",      std::to_string(port_),
        "--export-name", "vda",    "--format=raw", "--read-only", "--persistent",
        "--shared=0"};
    if (!tls_dir.empty()) {
      args.insert(
          args.end(),
          {"--object", "tls-creds-x509,id=tls0,endpoint=server,verify-peer=on,dir=" + tls_dir,
           "--tls-creds", "tls0"});
    }
    args.push_back(image_);
    server_ = Spawn(args);
    ASSERT_GT(server_, 0);
    WaitFor(server_, "qemu-nbd", [&] { return AcceptsTcp(kServerIp, std::to_string(port_)); });
  }

  // delay_proxy.py from kProxyIp to the server. With hold_after >= 0, connections after the
  // first `hold_after` are accepted and never answered.
  void StartProxy(int delay_ms, int hold_after = -1) {
    proxy_port_ = FreePort(kProxyIp);
    ASSERT_NE(proxy_port_, 0u);
    const std::string ready = dir_.File("proxy.ready");
    std::vector<std::string> args{"python3",      BFS_DELAY_PROXY,
                                  "--listen",     kProxyIp + ":" + std::to_string(proxy_port_),
                                  "--to",         kServerIp + ":" + std::to_string(port_),
                                  "--delay-ms",   std::to_string(delay_ms),
                                  "--ready-file", ready};
    if (hold_after >= 0) args.insert(args.end(), {"--hold-after", std::to_string(hold_after)});
    proxy_ = Spawn(args);
    ASSERT_GT(proxy_, 0);
    WaitFor(proxy_, "delay_proxy.py", [&] { return Exists(ready); });
  }

  // A CA in DIR/ca (ca-cert.pem, ca-key.pem).
  void MakeCa(const std::string& dir, const std::string& name) {
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0) << dir;
    WriteText(dir + "/ca.info", "cn = " + name + "\nca\ncert_signing_key\nexpiration_days = 2\n");
    ASSERT_TRUE(RunCommand({"certtool", "--generate-privkey", "--outfile", dir + "/ca-key.pem"}));
    ASSERT_TRUE(
        RunCommand({"certtool", "--generate-self-signed", "--load-privkey", dir + "/ca-key.pem",
                    "--template", dir + "/ca.info", "--outfile", dir + "/ca-cert.pem"}));
  }

  // DIR/PREFIX-cert.pem and DIR/PREFIX-key.pem, signed by the CA in ca_dir.
  void MakeCert(const std::string& ca_dir, const std::string& dir, const std::string& prefix,
                const std::string& template_text) {
    const std::string info = dir + "/" + prefix + ".info", key = dir + "/" + prefix + "-key.pem";
    WriteText(info, template_text);
    ASSERT_TRUE(RunCommand({"certtool", "--generate-privkey", "--outfile", key}));
    ASSERT_TRUE(RunCommand({"certtool", "--generate-certificate", "--load-ca-certificate",
                            ca_dir + "/ca-cert.pem", "--load-ca-privkey", ca_dir + "/ca-key.pem",
                            "--load-privkey", key, "--template", info, "--outfile",
                            dir + "/" + prefix + "-cert.pem"}));
  }

  // server/: the server's credentials for kServerIp; client/: the CA and a client certificate
  // (qemu-nbd asks for one: verify-peer=on, as libvirt's default).
  void MakeTlsDirs() {
    ASSERT_NO_FATAL_FAILURE(MakeCa(ca_dir_, "backupfs nbd test CA"));
    for (const std::string& d : {server_dir_, client_dir_}) {
      ASSERT_EQ(::mkdir(d.c_str(), 0700), 0) << d;
      ASSERT_TRUE(RunCommand({"cp", ca_dir_ + "/ca-cert.pem", d + "/ca-cert.pem"}));
    }
    ASSERT_NO_FATAL_FAILURE(MakeCert(ca_dir_, server_dir_, "server",
                                     "cn = " + kServerIp + "\nip_address = " + kServerIp +
                                         "\ntls_www_server\nencryption_key\nsigning_key\n"
                                         "expiration_days = 2\n"));
    ASSERT_NO_FATAL_FAILURE(MakeCert(ca_dir_, client_dir_, "client",
                                     "cn = backupfs test client\ntls_www_client\n"
                                     "encryption_key\nsigning_key\nexpiration_days = 2\n"));
  }

  NbdConnectOptions Options(const std::string& host, unsigned port,
                            const std::string& tls_dir = "") {
    NbdConnectOptions o;
    o.endpoint.host = host;
    o.endpoint.port = port;
    o.endpoint.tls = !tls_dir.empty();
    o.endpoint.tls_dir = tls_dir;
    o.export_name = "vda";
    return o;
  }

  // Maps the export and reads every data extent; the result must be the image, byte for byte.
  void ExpectExactRead(const NbdConnectOptions& o, const CopyOptions& copy = {}) {
    Result<NbdSource> source = NbdSource::Connect(o);
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    ASSERT_EQ(source->size(), kImageSize);
    Result<BlockStatusMaps> maps = QueryBlockStatus(*source);
    ASSERT_TRUE(maps.ok()) << maps.status().ToString();
    const ExtentList frames = FullFrames(maps->allocation);
    EXPECT_EQ(DataBytes(frames), 24 * MiB);  // 1, 2, 3 MiB of every 12 MiB
    std::vector<uint8_t> disk(kImageSize, 0);
    uint64_t next = 0;
    Status s = ReadExtents(*source, frames, copy, [&](uint64_t off, std::span<const uint8_t> b) {
      EXPECT_GE(off, next);
      next = off + b.size();
      std::copy(b.begin(), b.end(), disk.begin() + off);
      return Status::Ok();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(disk == raw_);
  }

  testing::ScratchDir dir_;
  const std::string image_ = dir_.File("disk.raw");
  const std::string ca_dir_ = dir_.File("ca");
  const std::string server_dir_ = dir_.File("server");
  const std::string client_dir_ = dir_.File("client");
  std::vector<uint8_t> raw_;
  pid_t server_ = -1, proxy_ = -1;
  unsigned port_ = 0, proxy_port_ = 0;
};

TEST_F(NbdTcpTest, ReadsOverTcpAreExact) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ExpectExactRead(Options(kServerIp, port_));
}

TEST_F(NbdTcpTest, ReadsOverTlsAreExact) {
  ASSERT_NO_FATAL_FAILURE(MakeTlsDirs());
  ASSERT_NO_FATAL_FAILURE(StartServer(server_dir_));
  ExpectExactRead(Options(kServerIp, port_, client_dir_));
}

// backupfs-capture -q maps through nbdinfo: its nbd:// and nbds:// URIs reach the same export.
TEST_F(NbdTcpTest, NbdinfoMapsOverTcpAndTlsAsWeDo) {
  if (!OnPath("nbdinfo")) GTEST_SKIP() << "nbdinfo is not installed";
  ASSERT_NO_FATAL_FAILURE(MakeTlsDirs());
  for (const std::string& tls : {std::string(), client_dir_}) {
    ASSERT_NO_FATAL_FAILURE(StartServer(tls.empty() ? "" : server_dir_));
    const NbdConnectOptions o = Options(kServerIp, port_, tls);
    Result<NbdSource> source = NbdSource::Connect(o);
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    Result<BlockStatusMaps> ours = QueryBlockStatus(*source);
    Result<BlockStatusMaps> theirs = QueryWithNbdinfo(o, kImageSize);
    ASSERT_TRUE(ours.ok()) << ours.status().ToString();
    ASSERT_TRUE(theirs.ok()) << theirs.status().ToString();
    EXPECT_EQ(FullFrames(ours->allocation), FullFrames(theirs->allocation)) << "tls: " << tls;
    StopChild(server_);
    server_ = -1;
  }
}

TEST_F(NbdTcpTest, TlsWithAnotherCaFailsToVerify) {
  ASSERT_NO_FATAL_FAILURE(MakeTlsDirs());
  ASSERT_NO_FATAL_FAILURE(StartServer(server_dir_));
  // The client's own certificate is fine; only the CA it trusts is another one.
  const std::string other = dir_.File("other-ca");
  ASSERT_NO_FATAL_FAILURE(MakeCa(other, "some other CA"));
  ASSERT_TRUE(RunCommand({"cp", other + "/ca-cert.pem", client_dir_ + "/ca-cert.pem"}));
  Result<NbdSource> s = NbdSource::Connect(Options(kServerIp, port_, client_dir_));
  ASSERT_FALSE(s.ok());
  const std::string want =
      "export 'vda': connecting to NBD " + kServerIp + ":" + std::to_string(port_) +
      " (TLS): the server's certificate did not verify against " + client_dir_ + "/ca-cert.pem";
  EXPECT_EQ(s.status().message().substr(0, want.size()), want) << s.status().ToString();
}

TEST_F(NbdTcpTest, TlsWithoutCaCertFailsBeforeConnecting) {
  const std::string empty = dir_.File("empty");
  ASSERT_EQ(::mkdir(empty.c_str(), 0700), 0);
  Result<NbdSource> s = NbdSource::Connect(Options(kServerIp, 1, empty));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.status().message(), "export 'vda': NBD over TLS to " + kServerIp +
                                      ":1 (TLS): --tls-cert " + empty +
                                      " lacks ca-cert.pem (the CA that signed the server's "
                                      "certificate)");
}

TEST_F(NbdTcpTest, ANonTlsServerIsRefusedWhenTlsIsAsked) {
  ASSERT_NO_FATAL_FAILURE(MakeTlsDirs());
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Result<NbdSource> s = NbdSource::Connect(Options(kServerIp, port_, client_dir_));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(kServerIp + ":" + std::to_string(port_) + " (TLS)"),
            std::string::npos)
      << s.status().ToString();
}

TEST_F(NbdTcpTest, ReadsThroughADelayingProxyOverFourConnectionsAreExact) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(StartProxy(5));
  NbdHandlePark park;
  NbdConnectOptions o = Options(kProxyIp, proxy_port_);
  o.park = &park;
  CopyOptions copy;
  copy.request_size = 64 * KiB;  // many reads: the window and connections matter
  ExpectExactRead(o, copy);
  EXPECT_EQ(park.size(), 4u);  // the source and its kTcpConnections - 1 extra connections
}

// The proxy answers the first connection only (as a server that takes one client at a time
// while advertising multi-conn): the extra connections never finish their handshakes, and the
// copy must not wait for them.
TEST_F(NbdTcpTest, ExtraConnectionsThatNeverAnswerDoNotHoldTheCopy) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(StartProxy(0, /*hold_after=*/1));
  NbdHandlePark park;
  NbdConnectOptions o = Options(kProxyIp, proxy_port_);
  o.park = &park;
  ExpectExactRead(o);
  EXPECT_EQ(park.size(), 4u);  // the held ones too
}

TEST_F(NbdTcpTest, ANetworkCutMidCopyFailsNamingTheExportAndOffset) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(StartProxy(5));
  Result<NbdSource> source = NbdSource::Connect(Options(kProxyIp, proxy_port_));
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  const ExtentList frames{{0, kImageSize, ExtentKind::kData}};
  CopyOptions copy;
  copy.request_size = 64 * KiB;
  copy.window = 8;  // slow enough that the cut comes long before the end
  int pieces = 0;
  const auto start = std::chrono::steady_clock::now();
  Status s = ReadExtents(*source, frames, copy, [&](uint64_t, std::span<const uint8_t>) {
    if (++pieces == 4) ::kill(proxy_, SIGUSR1);
    return Status::Ok();
  });
  ASSERT_FALSE(s.ok());
  EXPECT_LT(pieces, static_cast<int>(kImageSize / (64 * KiB)));
  const std::string& m = s.message();
  EXPECT_NE(m.find("export 'vda' on " + kProxyIp + ":" + std::to_string(proxy_port_)),
            std::string::npos)
      << m;
  // The read that failed, or where the copy stood when an idle connection saw the reset.
  EXPECT_TRUE(std::regex_search(
      m, std::regex("read of 65536 bytes at [0-9]+|every byte up to offset [0-9]+ was read")))
      << m;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

}  // namespace
}  // namespace backupfs
