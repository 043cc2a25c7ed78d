#include "common/remote.h"

#include <gtest/gtest.h>

#include "common/host_internal.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

TEST(RemoteFromUriTest, LocalUriNamesNoHost) {
  auto r = RemoteFromUri("qemu:///system", RemoteOptions{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->remote());
  EXPECT_EQ(r->uri, "qemu:///system");
  EXPECT_EQ(r->nbd_ip, "");
}

TEST(RemoteFromUriTest, SshUriGivesUserHostPortAndParameters) {
  auto r = RemoteFromUri(
      "qemu+ssh://root@127.0.0.2:2222/system?keyfile=/k/id%20a&known_hosts=/k/kh&no_verify=1",
      RemoteOptions{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->remote());
  EXPECT_EQ(r->ssh.host, "127.0.0.2");
  EXPECT_EQ(r->ssh.port, 2222u);
  EXPECT_EQ(r->ssh.user, "root");
  EXPECT_EQ(r->ssh.private_key, "/k/id a");
  EXPECT_EQ(r->ssh.known_hosts, "/k/kh");
  EXPECT_FALSE(r->ssh.verify_host_key);
  EXPECT_EQ(r->nbd_ip, "127.0.0.2");  // the export listens on the URI's host by default
}

TEST(RemoteFromUriTest, EscapedAmpersandStaysInsideTheValue) {
  auto r = RemoteFromUri("qemu+ssh://h/system?keyfile=/a%26b&known_hosts=/c", RemoteOptions{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->ssh.private_key, "/a&b");
  EXPECT_EQ(r->ssh.known_hosts, "/c");
  EXPECT_TRUE(r->ssh.verify_host_key);
  EXPECT_EQ(r->ssh.port, 22u);
}

TEST(RemoteFromUriTest, CommandLineWins) {
  RemoteOptions base;
  base.ssh.user = "backup";
  base.ssh.port = 2200;
  base.ssh.private_key = "/cli/key";
  base.nbd_ip = "10.0.0.5";
  auto r = RemoteFromUri("qemu+ssh://root@hv1:2222/system?keyfile=/uri/key", base);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->ssh.host, "hv1");
  EXPECT_EQ(r->ssh.user, "backup");
  EXPECT_EQ(r->ssh.port, 2200u);
  EXPECT_EQ(r->ssh.private_key, "/cli/key");
  EXPECT_EQ(r->nbd_ip, "10.0.0.5");
}

TEST(RemoteFromUriTest, TcpAndTlsUrisNameTheHostButNotSshsPortOrUser) {
  for (const char* uri :
       {"qemu+tcp://sasluser@hv2:16509/system", "qemu+tls://hv2/system", "qemu://hv2/system"}) {
    auto r = RemoteFromUri(uri, RemoteOptions{});
    ASSERT_TRUE(r.ok()) << uri << ": " << r.status().ToString();
    EXPECT_EQ(r->ssh.host, "hv2") << uri;
    EXPECT_EQ(r->ssh.port, 22u) << uri;
    EXPECT_EQ(r->ssh.user, "") << uri;
  }
}

TEST(RemoteFromUriTest, BadUrisAreRefusedByName) {
  for (const char* uri : {"not a uri", "qemu+ssh://h/system?no_verify=yes"}) {
    auto r = RemoteFromUri(uri, RemoteOptions{});
    ASSERT_FALSE(r.ok()) << uri;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(uri), std::string::npos) << r.status().message();
  }
}

TEST(ClientEndpointTest, ConnectsWhereTheExportListensUnlessToldOtherwise) {
  RemoteOptions o;
  o.ssh.host = "hv1";
  o.tls = true;
  o.tls_dir = "/pki";
  NbdEndpoint e = o.ClientEndpoint(10810);
  EXPECT_EQ(e.host, "hv1");
  EXPECT_EQ(e.port, 10810u);
  EXPECT_TRUE(e.tls);
  EXPECT_EQ(e.tls_dir, "/pki");
  EXPECT_TRUE(e.socket.empty());

  o.nbd_ip = "10.1.1.1";
  EXPECT_EQ(o.ClientEndpoint(10810).host, "10.1.1.1");
  o.nbd_connect = "127.0.0.3";
  e = o.ClientEndpoint(10811);
  EXPECT_EQ(e.host, "127.0.0.3");
  EXPECT_EQ(e.port, 10811u);
  o.nbd_connect = "127.0.0.3:20000";
  e = o.ClientEndpoint(10811);
  EXPECT_EQ(e.host, "127.0.0.3");
  EXPECT_EQ(e.port, 20000u);
  o.nbd_connect = "[::1]:20001";
  e = o.ClientEndpoint(10811);
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 20001u);
}

TEST(ShellQuoteTest, EveryWordArrivesVerbatim) {
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellCommand({"echo", "$(id)", "*"}), "'echo' '$(id)' '*'");
}

TEST(LocalHostTest, RunKeepsExitCodeAndBothStreams) {
  auto host = MakeLocalHost();
  auto r = host->Run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  auto checked = host->RunChecked({"sh", "-c", "echo first >&2; echo bad thing >&2; exit 3"});
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.status().message(), "sh on this host exited with 3: bad thing");
  auto missing = host->Run({"backupfs-no-such-program-xyz"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("backupfs-no-such-program-xyz"), std::string::npos);
}

TEST(LocalHostTest, FilesRoundTrip) {
  testing::ScratchDir dir;
  auto host = MakeLocalHost();
  const std::vector<uint8_t> bytes = testing::RandomBytes(3 << 20, 7);
  testing::WriteFileBytes(dir.File("src"), bytes);
  ASSERT_TRUE(host->MakeDirs(dir.File("a/b/c"), 0755).ok());
  ASSERT_TRUE(host->PutFile(dir.File("src"), dir.File("a/b/c/put"), 0640).ok());
  EXPECT_EQ(testing::ReadFileBytes(dir.File("a/b/c/put")), bytes);
  EXPECT_FALSE(*host->Exists(dir.File("a/b/c/put.partial")));
  ASSERT_TRUE(host->FetchFile(dir.File("a/b/c/put"), dir.File("back")).ok());
  EXPECT_EQ(testing::ReadFileBytes(dir.File("back")), bytes);
  ASSERT_TRUE(host->WriteFile(dir.File("w"), "hello", 0600).ok());
  EXPECT_EQ(*host->ReadFile(dir.File("w")), "hello");
  ASSERT_TRUE(host->Rename(dir.File("w"), dir.File("back")).ok());
  EXPECT_EQ(*host->ReadFile(dir.File("back")), "hello");
  ASSERT_TRUE(host->Sync(dir.File("back")).ok());
  ASSERT_TRUE(host->Sync(dir.path()).ok());
  ASSERT_TRUE(host->Remove(dir.File("back")).ok());
  EXPECT_FALSE(*host->Exists(dir.File("back")));
  ASSERT_TRUE(host->Remove(dir.File("a/b/c/put")).ok());
  ASSERT_TRUE(host->Remove(dir.File("a/b/c")).ok());
  EXPECT_FALSE(*host->Exists(dir.File("a/b/c")));
  auto missing = host->ReadFile(dir.File("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir.File("nope")), std::string::npos);
}

TEST(LocalHostTest, SpawnedProcessReportsItsEnd) {
  auto host = MakeLocalHost();
  auto p = host->Spawn({"sh", "-c", "echo bad thing >&2; exit 4"});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::optional<std::string> ended;
  for (int i = 0; i < 1000 && !(ended = (*p)->Exited()); i++) usleep(10000);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(*ended, "exited with 4: bad thing");
}

}  // namespace
}  // namespace backupfs
