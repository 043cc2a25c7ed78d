#include "stream/index.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

StreamIndex Sample() {
  StreamIndex idx;
  idx.identity = {1000, 0x1111, 0x2222};
  idx.checksum_granule = 1 << 20;
  Chunk a;
  a.offset = 0;
  a.length = 100;
  a.file_offset = 300;
  a.stored_size = 100;
  a.checksum = 0xdeadbeef;
  a.has_checksum = true;
  Chunk z;
  z.kind = ChunkKind::kZero;
  z.offset = 100;
  z.length = 50;
  z.frame = 1;
  Chunk b = a;
  b.offset = 200;
  b.file_offset = 442;
  b.frame = 2;
  idx.chunks = {a, z, b};
  return idx;
}

TEST(IndexTest, RoundTrips) {
  StreamIndex idx = Sample();
  auto back = DecodeIndex(EncodeIndex(idx), "x.idx");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->identity, idx.identity);
  EXPECT_EQ(back->chunks, idx.chunks);
  EXPECT_EQ(back->checksum_granule, idx.checksum_granule);
}

TEST(IndexTest, EveryFlippedByteIsDetected) {
  std::vector<uint8_t> bytes = EncodeIndex(Sample());
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::vector<uint8_t> bad = bytes;
    bad[i] ^= 0x40;
    auto r = DecodeIndex(bad, "x.idx");
    ASSERT_FALSE(r.ok()) << "flip at " << i;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    EXPECT_NE(r.status().message().find("x.idx: offset"), std::string::npos);
  }
}

TEST(IndexTest, EveryTruncationIsDetected) {
  std::vector<uint8_t> bytes = EncodeIndex(Sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeIndex(std::span(bytes).first(n), "x.idx").ok()) << n;
  }
}

TEST(IndexTest, RejectsHugeCountWithoutAllocating) {
  std::vector<uint8_t> bytes = EncodeIndex(Sample());
  bytes[40 + 7] = 0xff;  // count's top byte
  auto r = DecodeIndex(bytes, "x.idx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("offset 40"), std::string::npos);
}

TEST(IndexTest, FindReturnsIntersectingChunks) {
  StreamIndex idx = Sample();
  EXPECT_EQ(idx.Find(0, 1), (std::pair<size_t, size_t>{0, 1}));
  EXPECT_EQ(idx.Find(99, 2), (std::pair<size_t, size_t>{0, 2}));
  EXPECT_EQ(idx.Find(150, 50), (std::pair<size_t, size_t>{2, 2}));  // in the gap
  EXPECT_EQ(idx.Find(150, 51), (std::pair<size_t, size_t>{2, 3}));
  EXPECT_EQ(idx.Find(300, 10), (std::pair<size_t, size_t>{3, 3}));
}

TEST(IndexTest, ValidateAcceptsGoodChunks) {
  EXPECT_TRUE(ValidateChunks(Sample(), 1000, 300, 1000, "x").ok());
}

TEST(IndexTest, ValidateRejectsOverlapsAndOutOfBounds) {
  StreamIndex idx = Sample();
  idx.chunks[1].offset = 99;
  EXPECT_FALSE(ValidateChunks(idx, 1000, 300, 1000, "x").ok());
  idx = Sample();
  EXPECT_FALSE(ValidateChunks(idx, 299, 300, 1000, "x").ok());   // past the disk
  EXPECT_FALSE(ValidateChunks(idx, 1000, 300, 500, "x").ok());   // past the frames
  EXPECT_FALSE(ValidateChunks(idx, 1000, 301, 1000, "x").ok());  // before the frames
  idx.chunks[2].file_offset = 350;  // stored bytes overlap the first chunk's
  EXPECT_FALSE(ValidateChunks(idx, 1000, 300, 1000, "x").ok());
  idx = Sample();
  idx.chunks[0].length = 0;
  EXPECT_FALSE(ValidateChunks(idx, 1000, 300, 1000, "x").ok());
  idx = Sample();
  idx.chunks[1].stored_size = 5;
  EXPECT_FALSE(ValidateChunks(idx, 1000, 300, 1000, "x").ok());
  idx = Sample();
  idx.chunks[0].stored_size = 99;  // uncompressed chunk must store exactly its length
  EXPECT_FALSE(ValidateChunks(idx, 1000, 300, 1000, "x").ok());
}

}  // namespace
}  // namespace backupfs
