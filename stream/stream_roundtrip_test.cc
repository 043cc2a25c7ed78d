// Writes streams with StreamWriter and reads them back every way: scan, sidecar index, random
// access, with and without compression; then damages the sidecars and the data.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <cstring>

#include <csignal>
#include <filesystem>

#include "stream/checksum.h"
#include "stream/reader.h"
#include "stream/scanner.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::RandomBytes;
using testing::ReadFileBytes;
using testing::ScratchDir;
using testing::WriteFileBytes;

constexpr uint64_t kDisk = 8u << 20;

// A disk image and the frames that describe it: data at odd offsets, a zero frame, gaps.
struct Sample {
  std::vector<uint8_t> image = std::vector<uint8_t>(kDisk, 0);
  struct Frame {
    bool data;
    uint64_t offset, length;
  };
  std::vector<Frame> frames;
  uint64_t data_size = 0;

  Sample() {
    Add(true, 0, 1536 * 1024 + 512);  // crosses a granule boundary, odd end
    Add(false, 2u << 20, 65536);
    Add(true, (3u << 20) - 4096, 2u << 20);
    Add(true, 7u << 20, 4096);
  }
  void Add(bool data, uint64_t offset, uint64_t length) {
    frames.push_back({data, offset, length});
    if (data) {
      auto bytes = RandomBytes(length, offset);
      std::memcpy(image.data() + offset, bytes.data(), length);
      data_size += length;
    }
  }
};

StreamMetadata Meta(uint64_t data_size) {
  StreamMetadata m;
  m.virtual_size = kDisk;
  m.data_size = data_size;
  m.disk_name = "vda";
  m.disk_format = "qcow2";
  m.checkpoint_name = "virtnbdbackup.0";
  return m;
}

std::string WriteSample(const ScratchDir& dir, const Sample& s, const WriterOptions& opts,
                        const std::string& name = "vda.full.data",
                        const std::string& date = "2026-11-26T05:00:00.000001") {
  std::string path = dir.File(name);
  StreamMetadata meta = Meta(s.data_size);
  meta.date = date;
  auto w = StreamWriter::Create(path, meta, opts);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  for (const auto& f : s.frames) {
    Status st = f.data ? (*w)->AddData(f.offset, std::span(s.image).subspan(f.offset, f.length))
                       : (*w)->AddZero(f.offset, f.length);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  Status st = (*w)->Finish();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return path;
}

void ExpectReadsBack(const std::string& path, const Sample& s, IndexOrigin origin) {
  auto r = StreamReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->index_origin(), origin);
  std::vector<uint8_t> all(kDisk);
  ASSERT_TRUE((*r)->Read(0, all).ok());
  EXPECT_TRUE(all == s.image);
  // Unaligned random reads.
  for (uint64_t off : {1ull, 4095ull, 1572863ull, 3145727ull, 7340031ull}) {
    std::vector<uint8_t> part(70000 < kDisk - off ? 70000 : kDisk - off);
    Status st = (*r)->Read(off, part);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(0, std::memcmp(part.data(), s.image.data() + off, part.size())) << off;
  }
}

class RoundTripTest : public ::testing::TestWithParam<bool> {
 protected:
  WriterOptions Options() const {
    WriterOptions o;
    o.durable = false;
    if (GetParam()) o.lz4_level = 1;
    return o;
  }
  ScratchDir dir_;
  Sample sample_;
};

TEST_P(RoundTripTest, ReadsBackThroughSidecarIndex) {
  std::string path = WriteSample(dir_, sample_, Options());
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  ExpectReadsBack(path, sample_, IndexOrigin::kSidecar);
}

TEST_P(RoundTripTest, ReadsBackByScanningWithoutSidecar) {
  std::string path = WriteSample(dir_, sample_, Options());
  std::filesystem::remove(path + ".idx");
  ExpectReadsBack(path, sample_, IndexOrigin::kScanned);
}

TEST_P(RoundTripTest, ScannedIndexIsWrittenWhenAsked) {
  std::string path = WriteSample(dir_, sample_, Options());
  std::filesystem::remove(path + ".idx");
  ReaderOptions ro;
  ro.write_missing_index = true;
  auto r = StreamReader::Open(path, ro);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->index_origin(), IndexOrigin::kScannedWritten);
  ExpectReadsBack(path, sample_, IndexOrigin::kSidecar);
}

TEST_P(RoundTripTest, ScanMatchesTheFramesWritten) {
  std::string path = WriteSample(dir_, sample_, Options());
  auto src = FileSource::Open(path);
  ASSERT_TRUE(src.ok());
  auto layout = ScanStream(*src);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  ASSERT_EQ(layout->frames.size(), sample_.frames.size());
  for (size_t i = 0; i < sample_.frames.size(); ++i) {
    EXPECT_EQ(layout->frames[i].header.start, sample_.frames[i].offset);
    EXPECT_EQ(layout->frames[i].header.length, sample_.frames[i].length);
    EXPECT_EQ(layout->frames[i].header.kind,
              sample_.frames[i].data ? FrameKind::kData : FrameKind::kZero);
  }
  EXPECT_EQ(layout->meta.compressed(), GetParam());
  EXPECT_EQ(layout->meta.data_size, sample_.data_size);
}

TEST_P(RoundTripTest, ChecksumFileHoldsAdler32OfTheDataFile) {
  std::string path = WriteSample(dir_, sample_, Options());
  auto stored = ReadChecksumFile(path + ".chksum");
  auto actual = Adler32OfFile(path);
  ASSERT_TRUE(stored.ok() && actual.ok());
  EXPECT_EQ(*stored, *actual);
}

TEST_P(RoundTripTest, EveryChunkVerifies) {
  std::string path = WriteSample(dir_, sample_, Options());
  auto r = StreamReader::Open(path);
  ASSERT_TRUE(r.ok());
  for (const Chunk& c : (*r)->index().chunks) {
    EXPECT_EQ(c.has_checksum, c.kind == ChunkKind::kData);
    EXPECT_TRUE((*r)->VerifyChunk(c).ok());
  }
}

TEST_P(RoundTripTest, FlippedDataByteIsCorruptionNotData) {
  std::string path = WriteSample(dir_, sample_, Options());
  auto r0 = StreamReader::Open(path);
  ASSERT_TRUE(r0.ok());
  const Chunk victim = (*r0)->index().chunks[0];
  r0->reset();
  auto bytes = ReadFileBytes(path);
  bytes[testing::StoredByteUnder(path, victim, victim.length / 2)] ^= 1;
  WriteFileBytes(path, bytes);
  // The identity hashes only cover the head and tail: the sidecar still loads, and the
  // checksum catches the flip.
  auto r = StreamReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<uint8_t> buf(4096);
  Status st = (*r)->Read(victim.offset + victim.length / 2, buf);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(path), std::string::npos);
  EXPECT_FALSE((*r)->VerifyChunk(victim).ok());
  // Elsewhere still reads.
  EXPECT_TRUE((*r)->Read(7u << 20, buf).ok());
}

TEST_P(RoundTripTest, StaleSidecarIsNotTrusted) {
  std::string path = WriteSample(dir_, sample_, Options());
  auto old_idx = ReadFileBytes(path + ".idx");
  // A new backup replaces the data file (same frames, another date in its metadata), and
  // the old index is left behind.
  WriteSample(dir_, sample_, Options(), "vda.full.data", "2030-01-01T00:00:00.000000");
  WriteFileBytes(path + ".idx", old_idx);
  auto r = StreamReader::Open(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->index_origin(), IndexOrigin::kScanned);
  EXPECT_NE((*r)->index_problem().find("does not match its data file"), std::string::npos)
      << (*r)->index_problem();
}

TEST_P(RoundTripTest, CorruptSidecarIsNotTrusted) {
  std::string path = WriteSample(dir_, sample_, Options());
  auto idx = ReadFileBytes(path + ".idx");
  idx[70] ^= 1;
  WriteFileBytes(path + ".idx", idx);
  ReaderOptions ro;
  ro.write_missing_index = true;
  auto r = StreamReader::Open(path, ro);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->index_origin(), IndexOrigin::kScanned);  // evidence kept, not overwritten
  EXPECT_NE((*r)->index_problem().find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(ReadFileBytes(path + ".idx"), idx);
  ExpectReadsBack(path, sample_, IndexOrigin::kScanned);
}

INSTANTIATE_TEST_SUITE_P(Compression, RoundTripTest, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "lz4" : "raw"; });

TEST(WriterTest, LargeCompressedFrameIsSplitIntoChunks) {
  ScratchDir dir;
  const uint64_t len = 40u << 20;
  auto data = testing::CompressibleBytes(len, 3);
  StreamMetadata m = Meta(len);
  m.virtual_size = 64u << 20;
  WriterOptions o;
  o.durable = false;
  o.lz4_level = 0;
  auto w = StreamWriter::Create(dir.File("vda.full.data"), m, o);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->AddData(0, data).ok());
  ASSERT_TRUE((*w)->AddZero(len, 1 << 20).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  auto src = FileSource::Open(dir.File("vda.full.data"));
  auto layout = ScanStream(*src);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  ASSERT_EQ(layout->trailer.size(), 1u);
  EXPECT_TRUE(layout->trailer[0].split);
  EXPECT_EQ(layout->frames[0].chunk_lengths, std::vector<uint64_t>(10, 4u << 20));
  auto r = StreamReader::Open(dir.File("vda.full.data"));
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> back(len);
  ASSERT_TRUE((*r)->Read(0, back).ok());
  EXPECT_TRUE(back == data);
}

// Compression on worker threads must not change a byte of the data file or its sidecars:
// chunks, zero frames and headers stay in order, and every chunk's index entry and trailer
// size land where the sequential writer puts them.
TEST(WriterTest, BackgroundCompressionWritesTheSameFilesAsSequential) {
  ScratchDir dir;
  const uint64_t big = 34u << 20;  // split into 1 MiB chunks
  auto data = testing::CompressibleBytes(big, 5);
  auto small = RandomBytes(70000, 9);
  StreamMetadata m = Meta(big + 2 * small.size());
  m.virtual_size = 64u << 20;
  m.date = "2026-11-26T05:00:00.000001";
  auto write = [&](const std::string& name, unsigned threads) {
    WriterOptions o;
    o.durable = false;
    o.lz4_level = 1;
    o.compressed_chunk = 1u << 20;
    o.compress_threads = threads;
    auto w = StreamWriter::Create(dir.File(name), m, o);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddData(4096, small).ok());
    ASSERT_TRUE((*w)->AddZero(1u << 20, 1u << 20).ok());
    ASSERT_TRUE((*w)->BeginData(2u << 20, big).ok());
    for (uint64_t at = 0; at < big; at += 300000) {  // appends that straddle chunks
      const size_t n = static_cast<size_t>(std::min<uint64_t>(300000, big - at));
      ASSERT_TRUE((*w)->Append(std::span(data).subspan(at, n)).ok());
    }
    ASSERT_TRUE((*w)->AddZero(40u << 20, 4096).ok());
    ASSERT_TRUE((*w)->AddData(50u << 20, small).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  };
  write("seq.data", 1);
  write("par.data", 3);
  for (const char* suffix : {"", ".idx", ".chksum"}) {
    EXPECT_TRUE(ReadFileBytes(dir.File(std::string("seq.data") + suffix)) ==
                ReadFileBytes(dir.File(std::string("par.data") + suffix)))
        << "differs: " << suffix;
  }
  auto r = StreamReader::Open(dir.File("par.data"));
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> back(big);
  ASSERT_TRUE((*r)->Read(2u << 20, back).ok());
  EXPECT_TRUE(back == data);
}

// virtnbdrestore 1.9.15 reads a frame shorter than its 32 MiB request size as one lz4 frame
// with an integer trailer entry.
TEST(WriterTest, CompressedFrameUnder32MiBIsOneLz4Frame) {
  ScratchDir dir;
  const uint64_t len = 20u << 20;
  StreamMetadata m = Meta(len);
  m.virtual_size = len;
  WriterOptions o;
  o.durable = false;
  o.lz4_level = 0;
  auto w = StreamWriter::Create(dir.File("vda.full.data"), m, o);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->AddData(0, testing::CompressibleBytes(len, 5)).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  auto src = FileSource::Open(dir.File("vda.full.data"));
  auto layout = ScanStream(*src);
  ASSERT_TRUE(layout.ok());
  EXPECT_FALSE(layout->trailer[0].split);
  EXPECT_EQ(layout->trailer[0].chunk_sizes.size(), 1u);
}

// A write that fails (here: the file size limit) must poison the writer: Finish() may not
// complete a file with a hole in it.
TEST(WriterTest, FailedWriteIsStickyAndFinishRefuses) {
  ScratchDir dir;
  auto w = StreamWriter::Create(dir.File("vda.full.data"), Meta(0), WriterOptions{});
  ASSERT_TRUE(w.ok());
  for (uint64_t i = 0; i < 30000; ++i) ASSERT_TRUE((*w)->AddZero(i * 64, 64).ok());  // ~1 MiB
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = {4096, old.rlim_max};
  setrlimit(RLIMIT_FSIZE, &small);
  Status failed = Status::Ok();
  for (uint64_t i = 30000; i < 60000 && failed.ok(); ++i) failed = (*w)->AddZero(i * 64, 64);
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(failed.ok());
  EXPECT_FALSE((*w)->AddZero(60000 * 64, 64).ok());
  EXPECT_FALSE((*w)->Finish().ok());
  EXPECT_FALSE(std::filesystem::exists(dir.File("vda.full.data")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("vda.full.data.partial")));
}

TEST(ReaderTest, AFifoNamedLikeADataFileDoesNotHang) {
  ScratchDir dir;
  ASSERT_EQ(mkfifo(dir.File("vda.full.data").c_str(), 0600), 0);
  auto r = StreamReader::Open(dir.File("vda.full.data"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a regular file"), std::string::npos);
}

TEST(WriterTest, AbandonedWriterLeavesNothing) {
  ScratchDir dir;
  {
    auto w = StreamWriter::Create(dir.File("vda.full.data"), Meta(10), WriterOptions{});
    ASSERT_TRUE(w.ok());
    EXPECT_TRUE(std::filesystem::exists(dir.File("vda.full.data.partial")));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(WriterTest, WrongDataSizeFailsAndLeavesNothing) {
  ScratchDir dir;
  auto w = StreamWriter::Create(dir.File("vda.full.data"), Meta(10), WriterOptions{});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->AddData(0, RandomBytes(9, 1)).ok());
  Status st = (*w)->Finish();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir.File("vda.full.data")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("vda.full.data.partial")));
}

TEST(WriterTest, RejectsUnorderedOverlappingAndOversizedFrames) {
  ScratchDir dir;
  auto w = StreamWriter::Create(dir.File("x.data"), Meta(0), WriterOptions{});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->AddZero(4096, 4096).ok());
  EXPECT_FALSE((*w)->AddZero(0, 4096).ok());
  EXPECT_FALSE((*w)->AddZero(8191, 2).ok());
  EXPECT_FALSE((*w)->AddZero(kDisk - 1, 2).ok());
  ASSERT_TRUE((*w)->BeginData(8192, 10).ok());
  EXPECT_FALSE((*w)->Append(RandomBytes(11, 1)).ok());
  EXPECT_FALSE((*w)->AddZero(1 << 20, 1).ok());  // the data frame is incomplete
}

}  // namespace
}  // namespace backupfs
