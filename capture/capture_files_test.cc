// The pure parts of a capture run: nbdinfo maps, boot files and agent channel in the domain
// XML, the run log, sparse raw images, and the checks and moves on a saveset directory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "capture/nbdinfo_map.h"
#include "capture/saveset_files.h"
#include "common/domain_xml.h"
#include "common/raw_image.h"
#include "common/run_log.h"
#include "common/subprocess.h"
#include "stream/file.h"
#include "stream/local_storage.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

using testing::ReadFileBytes;
using testing::ScratchDir;
using testing::WriteFileBytes;

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(NbdinfoMapTest, AllocationAndDirtyContexts) {
  BlockStatusMaps maps;
  ASSERT_TRUE(ParseNbdinfoMap(R"([{"offset":0,"length":65536,"type":0,"description":"data"},
      {"offset":65536,"length":65536,"type":3,"description":"hole,zero"},
      {"offset":131072,"length":65536,"type":2}])",
                              kBaseAllocation, 196608, maps)
                  .ok());
  EXPECT_EQ(maps.allocation, (ExtentList{{0, 65536, ExtentKind::kData},
                                         {65536, 65536, ExtentKind::kHole},
                                         {131072, 65536, ExtentKind::kZero}}));
  ASSERT_TRUE(ParseNbdinfoMap(R"([{"offset":0,"length":4096,"type":1},
      {"offset":4096,"length":8192,"type":0},{"offset":12288,"length":4096,"type":1}])",
                              "qemu:dirty-bitmap:backup-vda", 16384, maps)
                  .ok());
  EXPECT_EQ(maps.dirty, (RangeList{{0, 4096}, {12288, 4096}}));
}

TEST(NbdinfoMapTest, GapsShortMapsAndGarbageAreErrors) {
  BlockStatusMaps maps;
  EXPECT_FALSE(
      ParseNbdinfoMap(R"([{"offset":4096,"length":4096,"type":0}])", kBaseAllocation, 8192, maps)
          .ok());
  EXPECT_FALSE(
      ParseNbdinfoMap(R"([{"offset":0,"length":4096,"type":0}])", kBaseAllocation, 8192, maps)
          .ok());
  EXPECT_FALSE(ParseNbdinfoMap("not json", kBaseAllocation, 8192, maps).ok());
  EXPECT_FALSE(
      ParseNbdinfoMap(R"([{"offset":0,"length":-1,"type":0}])", kBaseAllocation, 8192, maps).ok());
}

TEST(NbdinfoMapTest, UriEncodesExportAndSocket) {
  EXPECT_EQ(NbdUnixUri("vda", "/var/tmp/a b/nbd.sock"),
            "nbd+unix:///vda?socket=/var/tmp/a%20b/nbd.sock");
  EXPECT_EQ(NbdUnixUri("x?y", "/s&t"), "nbd+unix:///x%3Fy?socket=/s%26t");
}

constexpr char kUefiDomain[] = R"(<domain type='kvm'><name>vm</name>
  <os><type>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/vm_VARS.fd</nvram>
  </os>
  <devices>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices></domain>)";

TEST(DomainXmlTest, BootFilesAndAgentChannel) {
  auto files = ParseBootFiles(kUefiDomain, "vm");
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].setting, "loader");
  EXPECT_EQ((*files)[0].path, "/usr/share/OVMF/OVMF_CODE.fd");
  EXPECT_EQ((*files)[1].setting, "nvram");
  EXPECT_EQ((*files)[1].path, "/var/lib/libvirt/qemu/nvram/vm_VARS.fd");
  EXPECT_TRUE(*HasGuestAgentChannel(kUefiDomain, "vm"));
  EXPECT_FALSE(*HasGuestAgentChannel("<domain><name>x</name><devices/></domain>", "x"));
  EXPECT_TRUE(ParseBootFiles("<domain><name>x</name></domain>", "x")->empty());
  EXPECT_FALSE(ParseBootFiles("<notadomain/>", "x").ok());
}

TEST(RunLogTest, TheFileGetsEveryLineIncludingThoseBeforeItOpened) {
  ScratchDir dir;
  RunLog log(/*verbose=*/false, /*syslog=*/false, /*to_stderr=*/false);
  log.Info("before the file");
  log.Warn("a warning");
  ASSERT_TRUE(log.OpenFile(dir.File("run.log")).ok());
  log.Debug("a debug line");
  log.Error("an error");
  const std::vector<uint8_t> raw = ReadFileBytes(dir.File("run.log"));
  const std::string text(raw.begin(), raw.end());
  size_t a = text.find("INFO before the file"), b = text.find("WARNING a warning"),
         c = text.find("DEBUG a debug line"), d = text.find("ERROR an error");
  ASSERT_NE(a, std::string::npos) << text;
  ASSERT_NE(d, std::string::npos) << text;
  EXPECT_TRUE(a < b && b < c && c < d) << text;
  EXPECT_EQ(log.warnings(), 1u);
  struct stat st {};
  ASSERT_EQ(stat(dir.File("run.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(RawImageTest, SparseImageAppearsOnlyWhenFinished) {
  ScratchDir dir;
  const std::string path = dir.File("vda.copy.data");
  {
    auto w = RawImageWriter::Create(path, 8u << 20);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(1u << 20, Bytes("hello")).ok());
    EXPECT_FALSE((*w)->Write((8u << 20) - 2, Bytes("past")).ok());
    EXPECT_TRUE(std::filesystem::exists(path + ".partial"));
    EXPECT_FALSE(std::filesystem::exists(path));
  }  // abandoned
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  auto w = RawImageWriter::Create(path, 8u << 20);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(1u << 20, Bytes("hello")).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  const std::vector<uint8_t> back = ReadFileBytes(path);
  ASSERT_EQ(back.size(), 8u << 20);
  EXPECT_EQ(std::string(back.begin() + (1 << 20), back.begin() + (1 << 20) + 5), "hello");
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);  // holes stay holes
}

TEST(SavesetFilesTest, AnotherDomainsSavesetIsRefused) {
  ScratchDir dir;
  std::unique_ptr<Storage> saveset = OpenLocalStorage(dir.path());
  EXPECT_TRUE(CheckSavesetDomain(*saveset, "vm1").ok());
  WriteFileBytes(dir.File("vm1.cpt"), Bytes("[]"));
  WriteFileBytes(dir.File("vmconfig.virtnbdbackup.0.xml"),
                 Bytes("<domain><name>vm1</name></domain>"));
  EXPECT_TRUE(CheckSavesetDomain(*saveset, "vm1").ok());
  Status s = CheckSavesetDomain(*saveset, "vm2");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("another domain"), std::string::npos) << s.message();
}

StoredObject Object(const std::string& name, int64_t mtime_ns) {
  StoredObject o;
  o.name = name;
  o.mtime_ns = mtime_ns;
  return o;
}

TEST(SavesetFilesTest, ARunWaitsForASecondLaterThanTheNewestDataFile) {
  using std::chrono::nanoseconds;
  constexpr int64_t kSecond = 1000000000;
  const std::vector<StoredObject> top = {Object("vda.full.data", 100 * kSecond),
                                         Object("vda.inc.virtnbdbackup.1.data", 107 * kSecond),
                                         Object("vm.cpt", 109 * kSecond),  // not a data file
                                         Object("broken-chain.5/", 200 * kSecond)};
  EXPECT_EQ(WaitForALaterSecond(top, 107 * kSecond), nanoseconds(kSecond));
  EXPECT_EQ(WaitForALaterSecond(top, 107 * kSecond + 300000000), nanoseconds(700000000));
  EXPECT_EQ(WaitForALaterSecond(top, 108 * kSecond), nanoseconds(0));
  EXPECT_EQ(WaitForALaterSecond(top, 150 * kSecond), nanoseconds(0));
  // The store's clock ahead of this host's: the wait is bounded.
  EXPECT_EQ(WaitForALaterSecond(top, 90 * kSecond), kMaxWaitForALaterSecond);
  EXPECT_EQ(WaitForALaterSecond({}, 107 * kSecond), nanoseconds(0));
}

TEST(SavesetFilesTest, MoveChainAsideKeepsTheRunsLog) {
  ScratchDir dir;
  for (const char* f : {"vda.full.data", "vm.cpt", "backup.auto.1.log"}) {
    WriteFileBytes(dir.File(f), Bytes("x"));
  }
  std::filesystem::create_directory(dir.File("checkpoints"));
  WriteFileBytes(dir.File("checkpoints/virtnbdbackup.0.xml"), Bytes("<domaincheckpoint/>"));
  struct stat before {};
  ASSERT_EQ(stat(dir.File("checkpoints").c_str(), &before), 0);
  std::unique_ptr<Storage> saveset = OpenLocalStorage(dir.path());
  auto aside = MoveChainAside(*saveset, "backup.auto.1.log");
  ASSERT_TRUE(aside.ok()) << aside.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(*aside + "/vda.full.data"));
  EXPECT_TRUE(std::filesystem::exists(*aside + "/vm.cpt"));
  EXPECT_EQ(ReadFileBytes(*aside + "/checkpoints/virtnbdbackup.0.xml"),
            Bytes("<domaincheckpoint/>"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("checkpoints/virtnbdbackup.0.xml")));
  EXPECT_TRUE(std::filesystem::exists(dir.File("backup.auto.1.log")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("vda.full.data")));
  // The directory itself moved, in one rename: nothing stays behind.
  EXPECT_FALSE(std::filesystem::exists(dir.File("checkpoints")));
  struct stat after {};
  ASSERT_EQ(stat((*aside + "/checkpoints").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
}

TEST(SavesetFilesTest, ALocalDirectoryRenamesADirectoryWhole) {
  ScratchDir dir;
  std::filesystem::create_directories(dir.File("a/b"));
  WriteFileBytes(dir.File("a/b/f"), Bytes("x"));
  WriteFileBytes(dir.File("plain"), Bytes("y"));
  std::unique_ptr<Storage> saveset = OpenLocalStorage(dir.path());
  ASSERT_TRUE(saveset->Rename("a/", "c").ok());
  EXPECT_EQ(ReadFileBytes(dir.File("c/b/f")), Bytes("x"));
  ASSERT_TRUE(saveset->Rename("c", "d/").ok());
  EXPECT_EQ(ReadFileBytes(dir.File("d/b/f")), Bytes("x"));
  const Status s = saveset->Rename("plain/", "e");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "cannot rename " + dir.File("plain") + " to " + dir.File("e") + ": not a directory");
}

// Real qemu-img: a persistent bitmap is found, a missing one is not.
TEST(SavesetFilesTest, ImageHasBitmap) {
  if (!RunCapture({"qemu-img", "--version"}).ok()) GTEST_SKIP() << "no qemu-img";
  ScratchDir dir;
  const std::string img = dir.File("d.qcow2");
  ASSERT_TRUE(RunCapture({"qemu-img", "create", "-q", "-f", "qcow2", img, "1M"}).ok());
  ASSERT_TRUE(RunCapture({"qemu-img", "bitmap", "--add", img, "virtnbdbackup.0"}).ok());
  std::unique_ptr<Host> host = MakeLocalHost();
  EXPECT_TRUE(*ImageHasBitmap(*host, img, "virtnbdbackup.0"));
  EXPECT_FALSE(*ImageHasBitmap(*host, img, "virtnbdbackup.1"));
  EXPECT_FALSE(ImageHasBitmap(*host, dir.File("missing.qcow2"), "x").ok());
}

}  // namespace
}  // namespace backupfs
