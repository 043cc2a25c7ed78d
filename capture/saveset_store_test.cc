// The parts of a capture run that differ when the saveset is not a local directory: the log
// uploaded at the end, raw images written front to back with their gaps as zeros, and the
// checks and moves on a saveset listed through the storage. The store here is a local
// directory reached only through the object interface (no LocalDir(), so no sparse files and
// no log file written in place): real files, the code paths of a bucket. The bucket itself is
// tests/integration/test_capture_s3.sh's.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "capture/raw_target.h"
#include "capture/saveset_files.h"
#include "capture/saveset_log.h"
#include "common/run_log.h"
#include "stream/forwarding_storage.h"
#include "stream/local_storage.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::ReadFileBytes;
using testing::ScratchDir;
using testing::WriteFileBytes;

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string Text(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

// A directory seen as a store sees a bucket: everything through the interface, no LocalDir().
class ObjectsOnly final : public ForwardingStorage {
 public:
  explicit ObjectsOnly(std::unique_ptr<Storage> dir) : ForwardingStorage(std::move(dir)) {}
  std::optional<std::string> LocalDir() const override { return std::nullopt; }
  std::unique_ptr<Storage> Sub(std::string_view d) const override {
    return std::make_unique<ObjectsOnly>(ForwardingStorage::Sub(d));
  }
  Result<std::unique_ptr<StoredFile>> Open(std::string_view n) const override {
    ++opens;
    return ForwardingStorage::Open(n);
  }
  Result<std::string> ReadAll(std::string_view n, uint64_t max_size) const override {
    ++opens;
    return ForwardingStorage::ReadAll(n, max_size);
  }

  mutable int opens = 0;  // files opened or read whole: each is a request in a store
};

TEST(SavesetLogTest, AStoresLogIsUploadedWholeAtTheEndAndItsTemporaryFileRemoved) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.path()));
  RunLog log(/*verbose=*/false, /*syslog=*/false, /*to_stderr=*/false);
  SavesetLog file(log);
  log.Info("before the file");
  ASSERT_TRUE(file.Open(store, "backup.full.11302026120000").ok());
  EXPECT_EQ(file.name(), "backup.full.11302026120000.log");
  const std::string temp = log.file_path();
  EXPECT_NE(temp.find("backupfs-capture-log."), std::string::npos) << temp;
  EXPECT_FALSE(std::filesystem::exists(dir.File(file.name())));  // not before the end
  log.Error("the run's last line");
  ASSERT_TRUE(file.Upload().ok());
  const std::string text = Text(ReadFileBytes(dir.File(file.name())));
  EXPECT_NE(text.find("INFO before the file"), std::string::npos) << text;
  EXPECT_NE(text.find("ERROR the run's last line"), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(temp).parent_path()));
}

TEST(SavesetLogTest, RunsWithinOneSecondGetNumberedNames) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.path()));
  WriteFileBytes(dir.File("backup.inc.1.log"), Bytes("an earlier run's"));
  WriteFileBytes(dir.File("backup.inc.1.2.log"), Bytes("another"));
  RunLog log(false, false, false);
  SavesetLog file(log);
  ASSERT_TRUE(file.Open(store, "backup.inc.1").ok());
  EXPECT_EQ(file.name(), "backup.inc.1.3.log");
  // Locally the same names, taken in place.
  ScratchDir local;
  std::unique_ptr<Storage> dir_store = OpenLocalStorage(local.path());
  WriteFileBytes(local.File("backup.inc.1.log"), Bytes("an earlier run's"));
  RunLog log2(false, false, false);
  SavesetLog file2(log2);
  ASSERT_TRUE(file2.Open(*dir_store, "backup.inc.1").ok());
  EXPECT_EQ(log2.file_path(), local.File("backup.inc.1.2.log"));
  EXPECT_TRUE(file2.Upload().ok());  // nothing to do
}

TEST(SavesetLogTest, AFailedUploadKeepsTheTemporaryFileAndNamesIt) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.File("gone")));
  RunLog log(false, false, false);
  SavesetLog file(log);
  ASSERT_TRUE(store.MakeDir("").ok());
  ASSERT_TRUE(file.Open(store, "backup.copy.1").ok());
  std::filesystem::remove_all(dir.File("gone"));  // the store went away mid-run
  Status s = file.Upload();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("it is kept in " + log.file_path()), std::string::npos) << s.message();
  EXPECT_TRUE(std::filesystem::exists(log.file_path()));
  std::filesystem::remove_all(std::filesystem::path(log.file_path()).parent_path());
}

TEST(RawTargetTest, InAStoreTheGapsAreZerosAndNothingShowsBeforeFinish) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.path()));
  const uint64_t size = (3u << 20) + 512;
  {
    auto abandoned = RawTarget::Create(store, "vda.copy.data", size);
    ASSERT_TRUE(abandoned.ok());
    ASSERT_TRUE((*abandoned)->Write(4096, Bytes("lost")).ok());
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  auto raw = RawTarget::Create(store, "vda.copy.data", size);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE((*raw)->Write(512, Bytes("first")).ok());
  ASSERT_TRUE((*raw)->Write((2u << 20) + 7, Bytes("second")).ok());
  EXPECT_FALSE((*raw)->Write(600, Bytes("backwards")).ok());
  EXPECT_FALSE(std::filesystem::exists(dir.File("vda.copy.data")));
  auto again = RawTarget::Create(store, "vda.copy.data", size);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Write(512, Bytes("first")).ok());
  ASSERT_TRUE((*again)->Write((2u << 20) + 7, Bytes("second")).ok());
  ASSERT_TRUE((*again)->Finish({}).ok());
  EXPECT_EQ((*again)->bytes_written(), size);
  std::vector<uint8_t> want(size, 0);
  std::memcpy(want.data() + 512, "first", 5);
  std::memcpy(want.data() + (2u << 20) + 7, "second", 6);
  EXPECT_EQ(ReadFileBytes(dir.File("vda.copy.data")), want);
}

TEST(RawTargetTest, InADirectoryTheImageStaysSparse) {
  ScratchDir dir;
  std::unique_ptr<Storage> local = OpenLocalStorage(dir.path());
  auto raw = RawTarget::Create(*local, "vda.copy.data", 8u << 20);
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE((*raw)->Write(1u << 20, Bytes("hello")).ok());
  ASSERT_TRUE((*raw)->Finish({}).ok());
  EXPECT_EQ((*raw)->bytes_written(), 5u);
  struct stat st {};
  ASSERT_EQ(stat(dir.File("vda.copy.data").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
}

TEST(SavesetStoreTest, AnotherDomainsFilesAreFoundThroughTheListing) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.path()));
  EXPECT_TRUE(CheckSavesetDomain(store, "vm1").ok());  // nothing stored yet
  WriteFileBytes(dir.File("vmconfig.copy.xml"), Bytes("<domain><name>vm2</name></domain>"));
  Status s = CheckSavesetDomain(store, "vm1");
  EXPECT_EQ(s.message(), dir.path() +
                             " holds the saveset of another domain, vm2 (vmconfig.copy.xml): use "
                             "a directory per domain");
}

// A chain has a vmconfig per point; the first that names a domain tells whose the saveset is.
TEST(SavesetStoreTest, TheDomainCheckReadsOneVmconfigNotOnePerPoint) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.path()));
  WriteFileBytes(dir.File("vm1.cpt"), Bytes("[]"));
  for (const char* f : {"vmconfig.virtnbdbackup.0.xml", "vmconfig.virtnbdbackup.1.xml",
                        "vmconfig.virtnbdbackup.2.xml", "vmconfig.virtnbdbackup.3.xml"}) {
    WriteFileBytes(dir.File(f), Bytes("<domain><name>vm1</name></domain>"));
  }
  EXPECT_TRUE(CheckSavesetDomain(store, "vm1").ok());
  EXPECT_EQ(store.opens, 1);
  std::filesystem::remove(dir.File("vm1.cpt"));
  const Status s = CheckSavesetDomain(store, "vm2");
  EXPECT_NE(s.message().find(" holds the saveset of another domain, vm1 (vmconfig.virtnbdbackup."),
            std::string::npos)
      << s.message();
  EXPECT_EQ(store.opens, 2);
}

// A vmconfig that names no domain proves nothing: the next one is read.
TEST(SavesetStoreTest, TheDomainCheckReadsOnPastAVmconfigWithoutAName) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.path()));
  WriteFileBytes(dir.File("vmconfig.virtnbdbackup.0.xml"), Bytes("<not a domain"));
  WriteFileBytes(dir.File("vmconfig.virtnbdbackup.1.xml"),
                 Bytes("<domain><name>vm1</name></domain>"));
  const Status s = CheckSavesetDomain(store, "vm2");
  EXPECT_EQ(s.message(), dir.path() +
                             " holds the saveset of another domain, vm1 "
                             "(vmconfig.virtnbdbackup.1.xml): use a directory per domain");
  EXPECT_LE(store.opens, 2);
}

TEST(SavesetStoreTest, MoveChainAsideMovesNestedFilesOneByOne) {
  ScratchDir dir;
  ObjectsOnly store(OpenLocalStorage(dir.path()));
  for (const char* f : {"vda.full.data", "vda.full.data.idx", "vm.cpt", "backup.auto.2.log"}) {
    WriteFileBytes(dir.File(f), Bytes(f));
  }
  std::filesystem::create_directories(dir.File("checkpoints"));
  WriteFileBytes(dir.File("checkpoints/virtnbdbackup.0.xml"), Bytes("<x/>"));
  std::filesystem::create_directories(dir.File("broken-chain.1"));
  WriteFileBytes(dir.File("broken-chain.1/vda.full.data"), Bytes("older"));
  auto aside = MoveChainAside(store, "backup.auto.2.log");
  ASSERT_TRUE(aside.ok()) << aside.status().ToString();
  EXPECT_EQ(Text(ReadFileBytes(*aside + "/vda.full.data.idx")), "vda.full.data.idx");
  EXPECT_EQ(Text(ReadFileBytes(*aside + "/checkpoints/virtnbdbackup.0.xml")), "<x/>");
  EXPECT_FALSE(std::filesystem::exists(dir.File("vm.cpt")));
  EXPECT_TRUE(std::filesystem::exists(dir.File("backup.auto.2.log")));
  EXPECT_EQ(Text(ReadFileBytes(dir.File("broken-chain.1/vda.full.data"))), "older");
  EXPECT_FALSE(MoveChainAside(store, "").ok());  // the same second: never mixed with this one
}

// A run that lost its lock refuses its own commit: the check comes once the data is stored and
// before anything shows, so a refused file leaves nothing (no data file, no sidecars, no
// partial), in a store and in a directory alike, and the check's error comes back as it is.
StreamWriter::CommitCheck Refuse(int* asked) {
  return [asked] {
    ++*asked;
    return Status::FailedPrecondition("lock lost");
  };
}

// Runs `body` on a fresh directory, once as a store (objects only) and once as the directory;
// `body` gets the storage and the directory's path.
void InAStoreAndInADirectory(const std::function<void(Storage&, const std::string&)>& body) {
  for (const bool in_store : {true, false}) {
    SCOPED_TRACE(in_store ? "store" : "directory");
    ScratchDir dir;
    std::unique_ptr<Storage> local = OpenLocalStorage(dir.path());
    ObjectsOnly objects(OpenLocalStorage(dir.path()));
    body(in_store ? static_cast<Storage&>(objects) : *local, dir.path());
  }
}

TEST(CommitCheckTest, ARefusedStreamLeavesNothing) {
  InAStoreAndInADirectory([](Storage& store, const std::string& dir) {
    StreamMetadata meta;
    meta.virtual_size = 1u << 20;
    meta.data_size = 5;
    meta.disk_name = "vda";
    auto w = StreamWriter::Create(store, "vda.full.data", meta, WriterOptions{});
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->AddData(4096, Bytes("hello")).ok());
    int asked = 0;
    Status s = (*w)->Finish(Refuse(&asked));
    EXPECT_EQ(asked, 1);
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
    EXPECT_EQ(s.message(), "lock lost");
    w->reset();
    EXPECT_TRUE(std::filesystem::is_empty(dir));
  });
}

TEST(CommitCheckTest, ARefusedRawImageLeavesNothing) {
  InAStoreAndInADirectory([](Storage& store, const std::string& dir) {
    auto raw = RawTarget::Create(store, "vda.copy.data", 1u << 20);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE((*raw)->Write(512, Bytes("first")).ok());
    int asked = 0;
    Status s = (*raw)->Finish(Refuse(&asked));
    EXPECT_EQ(asked, 1);
    EXPECT_EQ(s.message(), "lock lost");
    raw->reset();
    EXPECT_TRUE(std::filesystem::is_empty(dir));
  });
}

}  // namespace
}  // namespace backupfs
