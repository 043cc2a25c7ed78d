// Damages streams on purpose, as leveldb's log_test does: every truncation, every flipped
// header byte, and each structural rule broken by hand. Each must be a Corruption naming the
// file and a byte offset; none may crash or return a wrong layout.
#include <gtest/gtest.h>

#include "stream/frame.h"
#include "stream/lz4_chunk.h"
#include "stream/metadata.h"
#include "stream/scanner.h"
#include "stream/test_util.h"
#include "stream/trailer.h"

namespace backupfs {
namespace {

// Assembles stream bytes frame by frame, so tests can break any rule they like.
class StreamBuilder {
 public:
  explicit StreamBuilder(uint64_t data_size, bool compressed = false, uint64_t disk = 1 << 20) {
    StreamMetadata m;
    m.virtual_size = disk;
    m.data_size = data_size;
    m.disk_name = "vda";
    m.date = "2026-11-26T00:00:00";
    if (compressed) m.compression_level = 1;
    std::string json = EncodeMetadata(m);
    Header(FrameKind::kMeta, 0, json.size());
    Raw(json + "\r\n");
  }
  StreamBuilder& Header(FrameKind k, uint64_t start, uint64_t len) {
    auto h = EncodeFrameHeader({k, start, len});
    bytes.insert(bytes.end(), h.begin(), h.end());
    return *this;
  }
  StreamBuilder& Raw(const std::string& s) {
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  StreamBuilder& Data(uint64_t start, uint64_t len) {
    Header(FrameKind::kData, start, len);
    return Raw(std::string(len, 'x') + "\r\n");
  }
  StreamBuilder& Zero(uint64_t start, uint64_t len) { return Header(FrameKind::kZero, start, len); }
  StreamBuilder& Stop() { return Header(FrameKind::kStop, 0, 0); }
  // A compressed data frame: one lz4 frame per entry of `chunks` (uncompressed sizes).
  StreamBuilder& Lz4Data(uint64_t start, std::vector<uint64_t> chunks) {
    uint64_t len = 0;
    for (uint64_t c : chunks) len += c;
    Header(FrameKind::kData, start, len);
    TrailerEntry e;
    e.split = chunks.size() > 1;
    for (uint64_t c : chunks) {
      auto packed = Lz4CompressChunk(testing::RandomBytes(c, c), 1);
      bytes.insert(bytes.end(), packed.begin(), packed.end());
      e.chunk_sizes.push_back(packed.size());
    }
    trailer.push_back(e);
    return Raw("\r\n");
  }
  StreamBuilder& Trailer(const std::string& json) {
    Stop();
    Raw(json + "\r\n");
    return Header(FrameKind::kComp, 0, json.size());
  }
  StreamBuilder& Trailer() { return Trailer(EncodeTrailer(trailer)); }

  std::vector<uint8_t> bytes;
  std::vector<TrailerEntry> trailer;
};

Result<StreamLayout> Scan(const std::vector<uint8_t>& bytes) {
  MemorySource src(bytes, "vda.inc.virtnbdbackup.1.data");
  return ScanStream(src);
}

void ExpectCorruption(const std::vector<uint8_t>& bytes, const std::string& needle) {
  auto r = Scan(bytes);
  ASSERT_FALSE(r.ok()) << "expected: " << needle;
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("vda.inc.virtnbdbackup.1.data: offset "), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(ScannerTest, ValidStreamsScan) {
  auto plain = StreamBuilder(300).Data(0, 100).Zero(100, 50).Data(4096, 200).Stop().bytes;
  auto r = Scan(plain);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->frames.size(), 3u);
  StreamBuilder z(300, true);
  z.Lz4Data(0, {100}).Zero(100, 50).Lz4Data(4096, {150, 50}).Trailer();
  auto rz = Scan(z.bytes);
  ASSERT_TRUE(rz.ok()) << rz.status().ToString();
  EXPECT_EQ(rz->frames[2].chunk_lengths, (std::vector<uint64_t>{150, 50}));
}

TEST(ScannerTest, EveryTruncationIsCorruption) {
  auto plain = StreamBuilder(300).Data(0, 100).Zero(100, 50).Data(4096, 200).Stop().bytes;
  StreamBuilder z(300, true);
  z.Lz4Data(0, {100}).Zero(100, 50).Lz4Data(4096, {150, 50}).Trailer();
  for (const auto* full : {&plain, &z.bytes}) {
    for (size_t n = 0; n < full->size(); ++n) {
      std::vector<uint8_t> cut(full->begin(), full->begin() + n);
      auto r = Scan(cut);
      ASSERT_FALSE(r.ok()) << "truncated to " << n;
      EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    }
  }
}

// A header byte made non-ASCII (bit 7 flipped) is never accepted. Flipping a digit to
// another digit can go unnoticed where the format has slack (a zero frame can move within a
// gap): nothing in the stream format covers its headers; our sidecar index does, and
// `backupfs-restore -a verify` compares the two.
TEST(ScannerTest, EveryHeaderByteMadeNonAsciiIsCorruption) {
  auto good = StreamBuilder(300).Data(0, 100).Zero(100, 50).Data(4096, 200).Stop().bytes;
  auto expected = Scan(good);
  ASSERT_TRUE(expected.ok());
  std::vector<uint64_t> headers = {0, expected->stop_offset};
  for (const auto& f : expected->frames) headers.push_back(f.header_offset);
  for (uint64_t h : headers) {
    for (size_t i = h; i < h + kFrameHeaderSize; ++i) {
      auto bad = good;
      bad[i] ^= 0x80;
      EXPECT_FALSE(Scan(bad).ok()) << "flip at " << i;
    }
  }
  for (size_t i = 0; i < good.size(); ++i) {  // no flip anywhere may crash
    auto bad = good;
    bad[i] ^= 0x01;
    (void)Scan(bad);
  }
}

TEST(ScannerTest, RejectsWrongFirstFrame) {
  auto b = StreamBuilder(0).Stop().bytes;
  std::copy_n("data", 4, b.begin());
  ExpectCorruption(b, "does not start with a 'meta' frame");
}

TEST(ScannerTest, RejectsOverlappingFrames) {
  ExpectCorruption(StreamBuilder(200).Data(0, 100).Data(99, 100).Stop().bytes, "overlaps");
}

TEST(ScannerTest, RejectsUnorderedFrames) {
  ExpectCorruption(StreamBuilder(200).Data(4096, 100).Data(0, 100).Stop().bytes, "precedes");
}

TEST(ScannerTest, RejectsFramePastTheDisk) {
  ExpectCorruption(StreamBuilder(0, false, 4096).Zero(0, 4097).Stop().bytes, "past the disk size");
}

TEST(ScannerTest, RejectsLengthPastEndOfFile) {
  auto b = StreamBuilder(100).Header(FrameKind::kData, 0, 100).Raw("short").bytes;
  ExpectCorruption(b, "past the end");
}

TEST(ScannerTest, RejectsHugeLengthWithoutAllocating) {
  auto b = StreamBuilder(0).Header(FrameKind::kData, 0, 0x7fffffffffffffffull).Stop().bytes;
  EXPECT_FALSE(Scan(b).ok());
}

TEST(ScannerTest, RejectsMissingTerminator) {
  auto b = StreamBuilder(100)
               .Header(FrameKind::kData, 0, 100)
               .Raw(std::string(100, 'x') + "XX")
               .Stop()
               .bytes;
  ExpectCorruption(b, "missing CR LF");
}

TEST(ScannerTest, RejectsDataSizeMismatch) {
  ExpectCorruption(StreamBuilder(101).Data(0, 100).Stop().bytes, "dataSize is 101");
}

TEST(ScannerTest, RejectsBytesAfterStop) {
  ExpectCorruption(StreamBuilder(0).Stop().Raw("junk").bytes, "unexpected bytes after the 'stop'");
}

TEST(ScannerTest, RejectsMetaFrameAmongData) {
  ExpectCorruption(StreamBuilder(0).Header(FrameKind::kMeta, 0, 0).Stop().bytes,
                   "unexpected 'meta'");
}

TEST(ScannerTest, RejectsBadMetadataJson) {
  StreamBuilder b(0);
  b.bytes.clear();
  b.Header(FrameKind::kMeta, 0, 5).Raw("{bad}\r\n").Stop();
  ExpectCorruption(b.bytes, "not valid JSON");
}

TEST(ScannerTest, RejectsTrailerWithTooFewEntries) {
  StreamBuilder z(200, true);
  z.Lz4Data(0, {100}).Lz4Data(100, {100});
  z.trailer.pop_back();
  z.Trailer();
  EXPECT_FALSE(Scan(z.bytes).ok());
}

TEST(ScannerTest, RejectsTrailerWithTooManyEntries) {
  StreamBuilder z(100, true);
  z.Lz4Data(0, {100});
  z.trailer.push_back(z.trailer.back());
  z.Trailer();
  ExpectCorruption(z.bytes, "the trailer lists 2 data frames, the stream has 1");
}

TEST(ScannerTest, RejectsTrailerSizesThatDoNotMatchPayload) {
  StreamBuilder z(100, true);
  z.Lz4Data(0, {100});
  z.trailer[0].chunk_sizes[0] += 1;
  z.Trailer();
  EXPECT_FALSE(Scan(z.bytes).ok());
}

TEST(ScannerTest, RejectsSplitChunksThatDoNotAddUp) {
  StreamBuilder z(300, true);
  z.Header(FrameKind::kData, 0, 300);
  auto a = Lz4CompressChunk(testing::RandomBytes(100, 1), 1);
  auto b = Lz4CompressChunk(testing::RandomBytes(100, 2), 1);
  z.bytes.insert(z.bytes.end(), a.begin(), a.end());
  z.bytes.insert(z.bytes.end(), b.begin(), b.end());
  z.Raw("\r\n");
  z.trailer.push_back({{a.size(), b.size()}, true});
  z.Trailer();
  ExpectCorruption(z.bytes, "lz4 chunks expand to 200 bytes, the frame says 300");
}

TEST(ScannerTest, RejectsBadTrailerJson) {
  StreamBuilder z(0, true);
  z.Trailer("[1, oops]");
  ExpectCorruption(z.bytes, "not a JSON list");
}

TEST(ScannerTest, RejectsCompressedStreamWithoutTrailer) {
  StreamBuilder z(0, true);
  z.Stop();
  EXPECT_FALSE(Scan(z.bytes).ok());
}

TEST(ScannerTest, IndexFromLayoutSplitsLz4Chunks) {
  StreamBuilder z(300, true);
  z.Lz4Data(0, {100}).Zero(100, 50).Lz4Data(4096, {150, 50}).Trailer();
  auto r = Scan(z.bytes);
  ASSERT_TRUE(r.ok());
  StreamIndex idx = IndexFromLayout(*r, {});
  ASSERT_EQ(idx.chunks.size(), 4u);
  EXPECT_EQ(idx.chunks[3].offset, 4096u + 150);
  EXPECT_EQ(idx.chunks[3].length, 50u);
  EXPECT_EQ(idx.chunks[1].kind, ChunkKind::kZero);
  EXPECT_TRUE(ValidateChunks(idx, 1 << 20, r->payload_begin, r->stop_offset, "x").ok());
}

}  // namespace
}  // namespace backupfs
