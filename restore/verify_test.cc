// backupfs-restore -a verify (backupfs/verify.h): every file of a saveset is read once, in one
// front-to-back pass, whatever the stream holds (sidecar or not, lz4 or not, split lz4
// frames, zero frames); and what it reports is what the reader and scanner say themselves.
#include "backupfs/verify.h"

#include <gtest/gtest.h>

#include <map>

#include "common/thread_annotations.h"
#include "stream/forwarding_storage.h"
#include "stream/local_storage.h"
#include "stream/reader.h"
#include "stream/scanner.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::ScratchDir;

// What was read of each file, through a local directory.
struct ReadLog {
  Mutex mu;
  std::map<std::string, uint64_t> bytes GUARDED_BY(mu);
  std::map<std::string, int> opens GUARDED_BY(mu);
  void Add(const std::string& name, uint64_t n, bool open) EXCLUDES(mu) {
    MutexLock lock(mu);
    bytes[name] += n;
    if (open) ++opens[name];
  }
  uint64_t Bytes(const std::string& name) EXCLUDES(mu) {
    MutexLock lock(mu);
    return bytes[name];
  }
  int Opens(const std::string& name) EXCLUDES(mu) {
    MutexLock lock(mu);
    return opens[name];
  }
};

class CountingFile final : public StoredFile {
 public:
  CountingFile(std::unique_ptr<StoredFile> file, std::string name, ReadLog& log)
      : file_(std::move(file)), name_(std::move(name)), log_(log) {}
  uint64_t size() const override { return file_->size(); }
  const std::string& name() const override { return file_->name(); }
  const std::string& version() const override { return file_->version(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    log_.Add(name_, out.size(), false);
    return file_->ReadAt(offset, out);
  }

 private:
  std::unique_ptr<StoredFile> file_;
  std::string name_;
  ReadLog& log_;
};

// A directory whose reads are counted; it has no fd, as a store's files have none.
class CountingStorage final : public ForwardingStorage {
 public:
  explicit CountingStorage(const std::string& dir) : ForwardingStorage(OpenLocalStorage(dir)) {}
  std::optional<std::string> LocalDir() const override { return std::nullopt; }
  Result<std::unique_ptr<StoredFile>> Open(std::string_view n) const override {
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<StoredFile> f, ForwardingStorage::Open(n));
    log.Add(std::string(n), 0, true);
    return std::unique_ptr<StoredFile>(new CountingFile(std::move(f), std::string(n), log));
  }
  // Through Open, so that whole-file reads are counted too.
  Result<std::string> ReadAll(std::string_view n, uint64_t max_size) const override {
    return Storage::ReadAll(n, max_size);
  }

  mutable ReadLog log;
};

class Collector final : public VerifyReporter {
 public:
  void Problem(const std::string& m) override { problems.push_back(m); }
  void Note(const std::string& m) override { notes.push_back(m); }
  void FileOk(const std::string& f, const std::string& d) override { ok[f] = d; }
  std::vector<std::string> problems, notes;
  std::map<std::string, std::string> ok;
};

constexpr uint64_t kBig = 34u << 20;  // a data frame split into lz4 frames when compressed

// vda.full.data: small data, a zero frame, a 34 MiB data frame, a zero frame, small data.
std::string WriteSaveset(const ScratchDir& dir, bool compressed) {
  const auto small = testing::RandomBytes(70000, 1);
  const auto big = testing::RandomBytes(kBig, 2);
  StreamMetadata m;
  m.virtual_size = 64u << 20;
  m.data_size = kBig + 2 * small.size();
  m.disk_name = "vda";
  m.disk_format = "qcow2";
  m.checkpoint_name = "virtnbdbackup.0";
  WriterOptions o;
  o.durable = false;
  if (compressed) o.lz4_level = 1;
  auto w = StreamWriter::Create(dir.File("vda.full.data"), m, o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_TRUE((*w)->AddData(4096, small).ok());
  EXPECT_TRUE((*w)->AddZero(1u << 20, 1u << 20).ok());
  EXPECT_TRUE((*w)->AddData(2u << 20, big).ok());
  EXPECT_TRUE((*w)->AddZero(40u << 20, 4096).ok());
  EXPECT_TRUE((*w)->AddData(50u << 20, small).ok());
  EXPECT_TRUE((*w)->Finish().ok());
  return dir.File("vda.full.data");
}

uint64_t FileSize(const std::string& path) { return testing::ReadFileBytes(path).size(); }

struct Layout {
  bool compressed;
  bool sidecar;
};

std::string LayoutName(const ::testing::TestParamInfo<Layout>& p) {
  return std::string(p.param.compressed ? "lz4" : "plain") +
         (p.param.sidecar ? "WithIndex" : "WithoutIndex");
}

class VerifyOnceTest : public ::testing::TestWithParam<Layout> {};

TEST_P(VerifyOnceTest, EveryFileIsReadOnceAndVouchedFor) {
  ScratchDir dir;
  const std::string data = WriteSaveset(dir, GetParam().compressed);
  if (!GetParam().sidecar) {
    ASSERT_EQ(unlink((data + ".idx").c_str()), 0);
  }
  CountingStorage saveset(dir.path());
  Collector found;
  auto summary = VerifySaveset(saveset, "", found);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_TRUE(found.problems.empty()) << found.problems.front();
  EXPECT_EQ(summary->problems, 0u);
  EXPECT_EQ(summary->bytes_reread, 0u);
  EXPECT_EQ(found.notes.size(), GetParam().sidecar || GetParam().compressed ? 0u : 1u)
      << "only an uncompressed file without an index has nothing to check its data by";

  EXPECT_EQ(saveset.log.Opens("vda.full.data"), 1);
  EXPECT_EQ(saveset.log.Bytes("vda.full.data"), FileSize(data)) << "the data file, once";
  EXPECT_EQ(saveset.log.Bytes("vda.full.data.chksum"), FileSize(data + ".chksum"));
  if (GetParam().sidecar) {
    EXPECT_EQ(saveset.log.Opens("vda.full.data.idx"), 1);
    EXPECT_EQ(saveset.log.Bytes("vda.full.data.idx"), FileSize(data + ".idx"));
  }
  ASSERT_EQ(found.ok.count(data), 1u);
  const std::string& detail = found.ok[data];
  EXPECT_NE(detail.find("5 frames, adler32 ok, "), std::string::npos) << detail;
  EXPECT_NE(detail.find(GetParam().sidecar ? "index ok" : "no index"), std::string::npos) << detail;
  if (GetParam().sidecar || GetParam().compressed) {
    EXPECT_EQ(detail.find(", 0 chunks checked"), std::string::npos) << detail;
    EXPECT_GE(summary->bytes_checked, kBig);
  }
}

INSTANTIATE_TEST_SUITE_P(Streams, VerifyOnceTest,
                         ::testing::Values(Layout{false, true}, Layout{true, true},
                                           Layout{false, false}, Layout{true, false}),
                         LayoutName);

// The problem a damaged chunk gets is the reader's own message for it, as a direct read says.
std::string ReaderSays(const std::string& path, uint64_t disk_offset) {
  auto r = StreamReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  for (const Chunk& c : (*r)->index().chunks) {
    if (c.kind == ChunkKind::kData && c.offset <= disk_offset && disk_offset < c.end()) {
      return (*r)->VerifyChunk(c).message();
    }
  }
  return "no chunk at " + std::to_string(disk_offset);
}

class VerifyDamageTest : public ::testing::TestWithParam<Layout> {};

TEST_P(VerifyDamageTest, AFlippedPayloadByteIsReportedAsTheReaderReportsIt) {
  if (!GetParam().sidecar && !GetParam().compressed) GTEST_SKIP() << "nothing checks its data";
  ScratchDir dir;
  const std::string data = WriteSaveset(dir, GetParam().compressed);
  if (!GetParam().sidecar) {
    ASSERT_EQ(unlink((data + ".idx").c_str()), 0);
  }
  auto r = StreamReader::Open(data);
  ASSERT_TRUE(r.ok());
  const uint64_t disk_offset = (2u << 20) + 5000000;
  auto [first, last] = (*r)->index().Find(disk_offset, 1);
  ASSERT_LT(first, last);
  const uint64_t at = testing::StoredByteUnder(data, (*r)->index().chunks[first],
                                               disk_offset - (*r)->index().chunks[first].offset);
  r->reset();
  auto bytes = testing::ReadFileBytes(data);
  bytes[at] ^= 0x40;
  testing::WriteFileBytes(data, bytes);
  const std::string expected = ReaderSays(data, disk_offset);

  CountingStorage saveset(dir.path());
  Collector found;
  auto summary = VerifySaveset(saveset, "", found);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  // The damaged chunk, and the adler32 of the whole file.
  ASSERT_EQ(found.problems.size(), 2u);
  EXPECT_NE(found.problems[0].find(data + ": adler32 is "), std::string::npos) << found.problems[0];
  EXPECT_NE(found.problems[0].find(data + ".chksum says "), std::string::npos);
  EXPECT_EQ(found.problems[1], expected);
  EXPECT_EQ(summary->bytes_reread, 0u);
  EXPECT_EQ(saveset.log.Bytes("vda.full.data"), FileSize(data));
}

TEST_P(VerifyDamageTest, ADamagedHeaderIsTheScannersProblem) {
  ScratchDir dir;
  const std::string data = WriteSaveset(dir, GetParam().compressed);
  if (!GetParam().sidecar) {
    ASSERT_EQ(unlink((data + ".idx").c_str()), 0);
  }
  std::string expected;
  {
    auto src = FileSource::Open(data);
    ASSERT_TRUE(src.ok());
    auto layout = ScanStream(*src);
    ASSERT_TRUE(layout.ok());
    auto bytes = testing::ReadFileBytes(data);
    bytes[layout->frames[2].header_offset + 3] = 'x';  // the big frame's kind
    testing::WriteFileBytes(data, bytes);
    auto damaged = FileSource::Open(data);
    expected = ScanStream(*damaged).status().message();
  }
  CountingStorage saveset(dir.path());
  Collector found;
  auto summary = VerifySaveset(saveset, "", found);
  ASSERT_TRUE(summary.ok());
  ASSERT_EQ(found.problems.size(), 1u);
  EXPECT_EQ(found.problems[0], expected);
  EXPECT_TRUE(found.ok.empty());
}

INSTANTIATE_TEST_SUITE_P(Streams, VerifyDamageTest,
                         ::testing::Values(Layout{false, true}, Layout{true, true},
                                           Layout{false, false}, Layout{true, false}),
                         LayoutName);

TEST(VerifyTest, AChecksumFileThatDisagreesIsNamed) {
  ScratchDir dir;
  const std::string data = WriteSaveset(dir, false);
  testing::WriteFileBytes(data + ".chksum", {'4', '2', '\n'});
  Collector found;
  auto summary = VerifySaveset(dir.path(), "", found);
  ASSERT_TRUE(summary.ok());
  ASSERT_EQ(found.problems.size(), 1u);
  EXPECT_EQ(found.problems[0].find(data + ": adler32 is "), 0u) << found.problems[0];
  EXPECT_NE(found.problems[0].find(", " + data + ".chksum says 42"), std::string::npos)
      << found.problems[0];
}

}  // namespace
}  // namespace backupfs
