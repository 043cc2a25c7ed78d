// ConnectSsh and qemu-nbd on a host, against the real sshd of tests/integration/lib/remote.sh
// on 127.0.0.2:2222 (which reaches this very machine, so that what a remote command did can
// be checked here). Run by tests/integration/test_remote_host.sh, which exports REMOTE_KEY,
// REMOTE_KNOWN_HOSTS, REMOTE_HOST_KEY_PUB and REMOTE_PKI; skipped without them.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include "common/host.h"
#include "common/qemu_nbd.h"
#include "common/remote.h"
#include "common/subprocess.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

using testing::ReadFileBytes;
using testing::ScratchDir;
using testing::WriteFileBytes;

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v != nullptr ? v : "";
}

// Waits up to `seconds` for `condition`.
bool WaitFor(const std::function<bool()>& condition, int seconds = 20) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// Whether a process whose command line is exactly `cmdline` runs on this machine.
bool Running(const std::string& cmdline) {
  auto r = MakeLocalHost()->Run({"pgrep", "-fx", cmdline});
  return r.ok() && r->exit_code == 0;
}

std::string Contains(const Status& st, const std::string& part) {
  return st.message().find(part) != std::string::npos ? ""
                                                      : "'" + part + "' not in: " + st.message();
}

class RemoteHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Env("REMOTE_KEY").empty() || Env("REMOTE_KNOWN_HOSTS").empty()) {
      GTEST_SKIP() << "no test sshd (run through tests/integration/test_remote_host.sh)";
    }
    options_.host = "127.0.0.2";
    options_.port = 2222;
    options_.user = "root";
    options_.private_key = Env("REMOTE_KEY");
    options_.known_hosts = Env("REMOTE_KNOWN_HOSTS");
    // The remote side writes here too: the scratch dir must be reachable from both "hosts".
    setenv("TMPDIR", "/var/tmp", 0);
    scratch_ = std::make_unique<ScratchDir>();
  }

  std::unique_ptr<Host> Connect() {
    auto host = ConnectSsh(options_);
    EXPECT_TRUE(host.ok()) << host.status().ToString();
    return host.ok() ? std::move(*host) : nullptr;
  }

  // A marker no other process of the machine has on its command line.
  std::string SleepSeconds() const {
    return "86399." + std::to_string(getpid()) + std::to_string(counter_++);
  }

  std::string File(const std::string& name) const { return scratch_->File(name); }

  SshOptions options_;
  std::unique_ptr<ScratchDir> scratch_;
  mutable int counter_ = 1;
};

TEST_F(RemoteHostTest, NamesItself) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  EXPECT_TRUE(host->remote());
  EXPECT_EQ(host->name(), "host 127.0.0.2");
  EXPECT_EQ(host->address(), "127.0.0.2");
}

// The fixture's libvirt URI is all a run needs to reach the host.
TEST_F(RemoteHostTest, ConnectHostFromTheUri) {
  if (Env("REMOTE_URI").empty()) GTEST_SKIP() << "no REMOTE_URI";
  auto remote = RemoteFromUri(Env("REMOTE_URI"), RemoteOptions{});
  ASSERT_TRUE(remote.ok()) << remote.status().ToString();
  auto host = ConnectHost(*remote);
  ASSERT_TRUE(host.ok()) << host.status().ToString();
  EXPECT_TRUE((*host)->remote());
  EXPECT_EQ((*host)->RunChecked({"echo", "hi"}).value(), "hi\n");
  auto local = ConnectHost(*RemoteFromUri("qemu:///system", RemoteOptions{}));
  ASSERT_TRUE(local.ok());
  EXPECT_FALSE((*local)->remote());
  EXPECT_EQ((*local)->name(), "this host");
}

TEST_F(RemoteHostTest, RunPassesEveryWordVerbatim) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  const std::vector<std::string> words = {"a b",   "it's", "$(id)", "`id`", "*",
                                          "\"q\"", "x\ny", "",      "a\\b", "$HOME;exit 9"};
  std::vector<std::string> argv = {"printf", "[%s]"};
  argv.insert(argv.end(), words.begin(), words.end());
  auto r = host->Run(argv);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::string expected;
  for (const std::string& w : words) expected += "[" + w + "]";
  EXPECT_EQ(r->out, expected);
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->err, "");
}

TEST_F(RemoteHostTest, RunKeepsExitCodeAndBothStreams) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  auto r = host->Run({"sh", "-c", "echo out; echo err >&2; head -c 3000000 /dev/zero; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n" + std::string(3000000, '\0'));
  EXPECT_EQ(r->err, "err\n");
  auto checked = host->RunChecked({"sh", "-c", "echo first >&2; echo bad thing >&2; exit 3"});
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.status().message(), "sh on host 127.0.0.2 exited with 3: bad thing");
  auto missing = host->RunChecked({"backupfs-no-such-program-xyz"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(
      Contains(missing.status(), "backupfs-no-such-program-xyz on host 127.0.0.2 exited with 127"),
      "");
  // Stdin is at its end: a program that reads it does not wait for ever.
  auto cat = host->Run({"cat"});
  ASSERT_TRUE(cat.ok());
  EXPECT_EQ(cat->out, "");
}

TEST_F(RemoteHostTest, FilesRoundTripByteExact) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  // Sizes around the SFTP chunk (64 KiB) and the 16 reads in flight (1 MiB).
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{65536}, size_t{1 << 20}, size_t{(5 << 20) + 4099}}) {
    SCOPED_TRACE(size);
    const std::vector<uint8_t> bytes = testing::RandomBytes(size, size + 1);
    WriteFileBytes(File("src"), bytes);
    ASSERT_TRUE(host->MakeDirs(File("d1/d2"), 0750).ok());
    Status put = host->PutFile(File("src"), File("d1/d2/put"), 0640);
    ASSERT_TRUE(put.ok()) << put.ToString();
    EXPECT_EQ(ReadFileBytes(File("d1/d2/put")), bytes);
    struct stat st;
    ASSERT_EQ(stat(File("d1/d2/put").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_FALSE(*host->Exists(File("d1/d2/put.partial")));
    Status fetched = host->FetchFile(File("d1/d2/put"), File("back"));
    ASSERT_TRUE(fetched.ok()) << fetched.ToString();
    EXPECT_EQ(ReadFileBytes(File("back")), bytes);
    auto read = host->ReadFile(File("d1/d2/put"));
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(*read, std::string(bytes.begin(), bytes.end()));
  }
  ASSERT_TRUE(host->WriteFile(File("w"), "hello\n", 0600).ok());
  EXPECT_EQ(*host->ReadFile(File("w")), "hello\n");
  // Rename replaces an existing file (which OpenSSH's plain SFTP rename refuses).
  Status renamed = host->Rename(File("w"), File("back"));
  ASSERT_TRUE(renamed.ok()) << renamed.ToString();
  EXPECT_EQ(*host->ReadFile(File("back")), "hello\n");
  EXPECT_FALSE(*host->Exists(File("w")));
  EXPECT_TRUE(host->Sync(File("back")).ok());
  EXPECT_TRUE(host->Sync(File("d1")).ok());
  ASSERT_TRUE(host->Remove(File("back")).ok());
  EXPECT_FALSE(*host->Exists(File("back")));
  ASSERT_TRUE(host->Remove(File("d1/d2/put")).ok());
  ASSERT_TRUE(host->Remove(File("d1/d2")).ok());
  EXPECT_FALSE(*host->Exists(File("d1/d2")));
  EXPECT_TRUE(*host->Exists(File("d1")));
}

TEST_F(RemoteHostTest, FileErrorsNameHostAndPath) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  auto missing = host->ReadFile(File("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "cannot open " + File("nope") + " on host 127.0.0.2: No such file or directory");
  Status fetch = host->FetchFile(File("nope"), File("out"));
  EXPECT_EQ(Contains(fetch, File("nope") + " on host 127.0.0.2"), "");
  Status put = host->PutFile(File("nope"), File("x"), 0600);
  EXPECT_EQ(Contains(put, File("nope")), "");
  // A copy that fails half-way leaves no .partial behind (a directory cannot be read).
  put = host->PutFile(scratch_->path(), File("x"), 0600);
  EXPECT_EQ(Contains(put, "cannot read " + scratch_->path()), "");
  EXPECT_FALSE(*host->Exists(File("x.partial")));
  EXPECT_FALSE(*host->Exists(File("x")));
  Status mkdir = host->MakeDirs(File("nope/in/missing"), 0755);
  EXPECT_TRUE(mkdir.ok()) << mkdir.ToString();
  ASSERT_TRUE(host->WriteFile(File("plain"), "x", 0600).ok());
  Status under_file = host->MakeDirs(File("plain/sub"), 0755);
  EXPECT_EQ(under_file.message(),
            File("plain") + " on host 127.0.0.2 exists and is not a directory");
  Status remove = host->Remove(File("nope.file"));
  EXPECT_EQ(Contains(remove, "cannot remove " + File("nope.file") + " on host 127.0.0.2"), "");
}

TEST_F(RemoteHostTest, SpawnedProcessEndsOnStop) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  const std::string secs = SleepSeconds();
  auto p = host->Spawn({"sleep", secs});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return Running("sleep " + secs); })) << "sleep never ran";
  EXPECT_EQ((*p)->Exited(), std::nullopt);
  Status st = (*p)->Stop("sleep");
  // sleep dies of the SIGTERM: the remote shell reports 128 + 15, and says so.
  EXPECT_EQ(st.message(), "sleep on host 127.0.0.2 exited with 143: Terminated");
  EXPECT_FALSE(Running("sleep " + secs));
  // The host still works after it.
  EXPECT_EQ(host->Run({"echo", "ok"})->out, "ok\n");
}

TEST_F(RemoteHostTest, SpawnedProcessStopsWithExitZero) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  // The shell says when its trap is set: a SIGTERM before that would end it with 143.
  const std::string ready = File("trap-set");
  auto p = host->Spawn(
      {"sh", "-c", "trap 'exit 0' TERM; : > \"$0\"; while :; do sleep 0.1; done", ready});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(ready); })) << "the shell never ran";
  Status st = (*p)->Stop("looper");
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST_F(RemoteHostTest, SpawnedProcessReportsItsEnd) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  auto p = host->Spawn({"sh", "-c", "echo first >&2; echo bad thing >&2; exit 4"});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::optional<std::string> ended;
  ASSERT_TRUE(WaitFor([&] { return (ended = (*p)->Exited()).has_value(); }));
  EXPECT_EQ(*ended, "exited with 4: bad thing");
  EXPECT_EQ(Contains((*p)->Stop("sh"), "had already ended: exited with 4: bad thing"), "");
}

TEST_F(RemoteHostTest, SpawnedProcessEndsWithTheHostObject) {
  const std::string secs = SleepSeconds();
  {
    auto host = Connect();
    ASSERT_NE(host, nullptr);
    auto p = host->Spawn({"sleep", secs});
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    ASSERT_TRUE(WaitFor([&] { return Running("sleep " + secs); }));
    host.reset();  // the process keeps the connection; its destructor stops it
  }
  EXPECT_TRUE(WaitFor([&] { return !Running("sleep " + secs); }));
}

// A child process connects, spawns `sleep secs` and waits; returns its pid once the sleep runs.
pid_t ChildThatSpawns(const SshOptions& options, const std::string& secs) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  const pid_t child = fork();
  if (child == 0) {
    auto host = ConnectSsh(options);
    if (!host.ok()) _exit(1);
    auto p = (*host)->Spawn({"sleep", secs});
    if (!p.ok()) _exit(2);
    (void)!write(ready[1], "r", 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char c = 0;
  const bool spawned = read(ready[0], &c, 1) == 1;
  close(ready[0]);
  if (!spawned) {
    waitpid(child, nullptr, 0);
    return -1;
  }
  return child;
}

// Our process SIGKILLed: nothing stops the remote program but the dropped connection.
TEST_F(RemoteHostTest, SpawnedProcessDiesWhenOurProcessIsKilled) {
  const std::string secs = SleepSeconds();
  const pid_t child = ChildThatSpawns(options_, secs);
  ASSERT_GT(child, 0) << "the child could not connect or spawn";
  ASSERT_TRUE(WaitFor([&] { return Running("sleep " + secs); }));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(WaitFor([&] { return !Running("sleep " + secs); }))
      << "sleep " << secs << " outlived the ssh connection";
}

// A client that stops answering without closing (a cut network, here a stopped process):
// sshd drops it after its ClientAlive probes (6 s in the test sshd), and the program ends.
TEST_F(RemoteHostTest, SpawnedProcessDiesWhenTheClientStopsAnswering) {
  const std::string secs = SleepSeconds();
  const pid_t child = ChildThatSpawns(options_, secs);
  ASSERT_GT(child, 0) << "the child could not connect or spawn";
  ASSERT_TRUE(WaitFor([&] { return Running("sleep " + secs); }));
  kill(child, SIGSTOP);
  EXPECT_TRUE(WaitFor([&] { return !Running("sleep " + secs); }, 30))
      << "sleep " << secs << " outlived the silent ssh connection";
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

// sshd drops clients that do not answer its ClientAlive probes (6 s in the test sshd): a host
// left alone while NBD data flows must keep its spawned programs.
TEST_F(RemoteHostTest, SpawnedProcessSurvivesAnIdleOwner) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  const std::string secs = SleepSeconds();
  auto p = host->Spawn({"sleep", secs});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return Running("sleep " + secs); }));
  // Watches for the sleep to end, which it must not, for three times sshd's patience.
  EXPECT_FALSE(WaitFor([&] { return !Running("sleep " + secs); }, 18))
      << "sleep ended while its owner was idle";
  EXPECT_EQ((*p)->Exited(), std::nullopt);
  EXPECT_EQ((*p)->Stop("sleep").message(), "sleep on host 127.0.0.2 exited with 143: Terminated");
}

TEST_F(RemoteHostTest, UnreachablePortIsNamed) {
  options_.port = 2223;
  auto host = ConnectSsh(options_);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(Contains(host.status(), "cannot connect to 127.0.0.2:2223 over ssh: "), "");
  EXPECT_EQ(Contains(host.status(), "Connection refused"), "");
}

TEST_F(RemoteHostTest, WrongKeyIsRefusedByName) {
  auto made = RunCapture({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", File("other")});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  options_.private_key = File("other");
  auto host = ConnectSsh(options_);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(Contains(host.status(), "127.0.0.2:2222 refused user root with key " + File("other")),
            "");
  options_.private_key = File("missing-key");
  host = ConnectSsh(options_);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(Contains(host.status(), "cannot read the ssh private key " + File("missing-key")), "");
}

TEST_F(RemoteHostTest, UnknownHostKeyIsRefusedUnlessNotVerifying) {
  WriteFileBytes(File("empty_known_hosts"), {});
  options_.known_hosts = File("empty_known_hosts");
  auto host = ConnectSsh(options_);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(Contains(host.status(), "host key of 127.0.0.2:2222 is not in " +
                                        File("empty_known_hosts") + ": the server offers SHA256:"),
            "");
  options_.verify_host_key = false;
  host = ConnectSsh(options_);
  ASSERT_TRUE(host.ok()) << host.status().ToString();
}

TEST_F(RemoteHostTest, ChangedHostKeyIsRefused) {
  auto made = RunCapture({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", File("impostor")});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  const std::vector<uint8_t> pub = ReadFileBytes(File("impostor.pub"));
  std::string line = "[127.0.0.2]:2222 " + std::string(pub.begin(), pub.end());
  WriteFileBytes(File("changed_known_hosts"), std::vector<uint8_t>(line.begin(), line.end()));
  options_.known_hosts = File("changed_known_hosts");
  auto host = ConnectSsh(options_);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(
      Contains(host.status(), "host key of 127.0.0.2:2222 does not match " +
                                  File("changed_known_hosts") + " (possible man-in-the-middle)"),
      "");
}

class RemoteQemuNbdTest : public RemoteHostTest {
 protected:
  void SetUp() override {
    RemoteHostTest::SetUp();
    if (IsSkipped()) return;
    if (Env("REMOTE_PKI").empty()) GTEST_SKIP() << "no REMOTE_PKI";
    image_bytes_ = testing::RandomBytes(4 << 20, 99);
    WriteFileBytes(File("disk.raw"), image_bytes_);
    // A port of its own: other tests may run qemu-nbd on the default one meanwhile.
    port_ = 20000 + static_cast<unsigned>(getpid() % 10000);
  }

  QemuNbdOptions Options() const {
    QemuNbdOptions o;
    o.image = File("disk.raw");
    o.format = "raw";
    o.export_name = "vda";
    o.tcp_address = "127.0.0.2";
    o.tcp_port = port_;
    return o;
  }

  std::string Uri(const std::string& scheme, const std::string& query = "") const {
    return scheme + "://127.0.0.2:" + std::to_string(port_) + "/vda" + query;
  }

  std::vector<uint8_t> image_bytes_;
  unsigned port_ = 0;
};

TEST_F(RemoteQemuNbdTest, ServesOverTcpAndRefusesASecondServerOnThePort) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  auto server = StartQemuNbdOn(*host, Options());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto copied = RunCapture({"nbdcopy", Uri("nbd"), File("copy.raw")});
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(ReadFileBytes(File("copy.raw")), image_bytes_);

  auto second = StartQemuNbdOn(*host, Options());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().message(),
            "cannot start qemu-nbd on host 127.0.0.2 (127.0.0.2:" + std::to_string(port_) +
                ") for " + File("disk.raw") + ": something already listens on 127.0.0.2:" +
                std::to_string(port_) + "; another backup may be running on port " +
                std::to_string(port_) + ": pick another port with -P");

  Status stopped = (*server)->Stop();
  EXPECT_TRUE(stopped.ok()) << stopped.ToString();
  EXPECT_FALSE(Running("qemu-nbd.*--port=" + std::to_string(port_) + ".*"));
}

// The port taken where our probe does not look (a wildcard bind over a server on one
// address): qemu-nbd's own complaint, with the hint.
TEST_F(RemoteQemuNbdTest, PortInUseQuotesQemuNbdWithTheHint) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  auto first = StartQemuNbdOn(*host, Options());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  QemuNbdOptions o = Options();
  o.tcp_address = "0.0.0.0";
  auto second = StartQemuNbdOn(*host, o, "127.0.0.4");
  ASSERT_FALSE(second.ok());
  const std::string port = std::to_string(port_);
  EXPECT_EQ(Contains(second.status(), "qemu-nbd on host 127.0.0.2 (*:" + port + ") for " +
                                          File("disk.raw") + " exited with 1: "),
            "");
  EXPECT_EQ(
      Contains(second.status(), "Address already in use; another backup may be running on port " +
                                    port + ": pick another port with -P"),
      "");
  EXPECT_TRUE((*first)->Stop().ok());
}

TEST_F(RemoteQemuNbdTest, BindFailureQuotesQemuNbd) {
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  QemuNbdOptions o = Options();
  o.tcp_address = "192.0.2.1";  // not an address of this machine
  auto server = StartQemuNbdOn(*host, o, "127.0.0.2");
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(
      Contains(server.status(), "qemu-nbd on host 127.0.0.2 (192.0.2.1:" + std::to_string(port_) +
                                    ") for " + File("disk.raw") + " exited with 1: "),
      "");
  EXPECT_EQ(Contains(server.status(), "Cannot assign requested address"), "");
}

TEST_F(RemoteQemuNbdTest, ServesOverTls) {
  const std::string pki = Env("REMOTE_PKI");
  auto host = Connect();
  ASSERT_NE(host, nullptr);
  QemuNbdOptions o = Options();
  o.tls_dir = pki + "/server";
  o.tls_verify_peer = true;
  auto server = StartQemuNbdOn(*host, o);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto copied = RunCapture(
      {"nbdcopy", Uri("nbds", "?tls-certificates=" + pki + "/client"), File("copy.raw")});
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(ReadFileBytes(File("copy.raw")), image_bytes_);
  // Plain NBD, and a client of another CA, are refused.
  auto plain = RunCapture({"nbdinfo", "--size", Uri("nbd")});
  EXPECT_FALSE(plain.ok());
  auto wrong =
      RunCapture({"nbdinfo", "--size", Uri("nbds", "?tls-certificates=" + pki + "/wrongca")});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(Contains(wrong.status(), "certificate"), "");
  Status stopped = (*server)->Stop();
  EXPECT_TRUE(stopped.ok()) << stopped.ToString();
}

TEST_F(RemoteQemuNbdTest, LocalHostServesTheSameWay) {
  auto host = MakeLocalHost();
  auto server = StartQemuNbdOn(*host, Options());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto size = RunCapture({"nbdinfo", "--size", Uri("nbd")});
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(*size, std::to_string(4 << 20) + "\n");
  Status stopped = (*server)->Stop();
  EXPECT_TRUE(stopped.ok()) << stopped.ToString();
}

}  // namespace
}  // namespace backupfs
