// StreamReader's lz4 reads through a shared ChunkCache, from many threads at once, as the FUSE
// loop issues them: one decode per 64 KiB lz4 block, and a damaged block is an error for every
// reader of it.
#include <gtest/gtest.h>

#include <cstring>
#include <latch>
#include <thread>
#include <vector>

#include "stream/reader.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::ScratchDir;

constexpr uint64_t kChunk = 4u << 20;
constexpr uint64_t kDisk = 2 * kChunk;
constexpr int kThreads = 8;

// An lz4 data file of two 4 MiB frames, one chunk each, of random bytes (stored nearly 1:1, so a
// byte in the middle of a chunk lies outside the 64 KiB that tie the sidecar index to its data
// file).
std::string WriteLz4File(const ScratchDir& dir, std::vector<uint8_t>* image) {
  *image = testing::RandomBytes(kDisk, 11);
  StreamMetadata m;
  m.virtual_size = kDisk;
  m.data_size = kDisk;
  m.disk_name = "vda";
  m.disk_format = "qcow2";
  m.checkpoint_name = "virtnbdbackup.0";
  m.date = "2026-11-26T05:00:00.000001";
  WriterOptions o;
  o.durable = false;
  o.lz4_level = 0;
  const std::string path = dir.File("vda.full.data");
  auto w = StreamWriter::Create(path, m, o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  for (uint64_t off = 0; off < kDisk; off += kChunk) {  // a frame under 32 MiB: one lz4 chunk
    EXPECT_TRUE((*w)->AddData(off, std::span(*image).subspan(off, kChunk)).ok());
  }
  EXPECT_TRUE((*w)->Finish().ok());
  return path;
}

std::unique_ptr<StreamReader> Open(const std::string& path, std::shared_ptr<ChunkCache> cache) {
  ReaderOptions o;
  o.cache = std::move(cache);
  auto r = StreamReader::Open(path, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// Each thread reads 4 KiB of the first chunk's block at 1 MiB, at its own offset, all starting
// together.
constexpr uint64_t kBlockAt = 1u << 20;
constexpr uint64_t kPiece = 4096;
std::vector<Status> ReadOneBlockConcurrently(StreamReader& r, std::vector<uint8_t>* out) {
  out->assign(kThreads * kPiece, 0);
  std::vector<Status> got(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      const uint64_t off = kBlockAt + i * kPiece;
      std::span<uint8_t> piece = std::span(*out).subspan(i * kPiece, kPiece);
      start.arrive_and_wait();
      got[i] = r.Read(off, piece);
    });
  }
  for (auto& t : threads) t.join();
  return got;
}

TEST(ReaderCacheTest, ConcurrentReadsOfOneLz4BlockDecodeItOnce) {
  ScratchDir dir;
  std::vector<uint8_t> image;
  const std::string path = WriteLz4File(dir, &image);
  auto cache = std::make_shared<ChunkCache>(64u << 20);
  auto r = Open(path, cache);
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->index().chunks.size(), 2u);
  ASSERT_TRUE(r->index().chunks[0].compressed);
  std::vector<uint8_t> out;
  for (const Status& s : ReadOneBlockConcurrently(*r, &out)) EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(0, std::memcmp(out.data(), image.data() + kBlockAt, out.size()));
  const ChunkCache::Stats s = cache->stats();
  EXPECT_EQ(s.decodes, 1u);
  EXPECT_EQ(s.hits + s.shared, kThreads - 1u);
}

TEST(ReaderCacheTest, ADamagedLz4BlockIsAnErrorForEveryConcurrentReader) {
  ScratchDir dir;
  std::vector<uint8_t> image;
  const std::string path = WriteLz4File(dir, &image);
  {
    auto intact = Open(path, nullptr);
    ASSERT_NE(intact, nullptr);
    const Chunk& c = intact->index().chunks[0];
    std::vector<uint8_t> bytes = testing::ReadFileBytes(path);
    bytes[testing::StoredByteUnder(path, c, kBlockAt)] ^= 0x10;
    testing::WriteFileBytes(path, bytes);
  }
  auto cache = std::make_shared<ChunkCache>(64u << 20);
  auto r = Open(path, cache);
  ASSERT_NE(r, nullptr);
  std::vector<uint8_t> out;
  for (const Status& s : ReadOneBlockConcurrently(*r, &out)) {
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("vda.full.data: offset "), std::string::npos) << s.ToString();
  }
  EXPECT_EQ(cache->bytes(), 0u);  // nothing of the damaged block is kept
  std::vector<uint8_t> whole(kChunk);
  EXPECT_EQ(r->Read(0, whole).code(), StatusCode::kCorruption);  // nor read as part of more
  std::vector<uint8_t> other(4096);
  EXPECT_TRUE(r->Read(kBlockAt + (64u << 10), other).ok());  // the next block still reads
  EXPECT_EQ(0, std::memcmp(other.data(), image.data() + kBlockAt + (64u << 10), other.size()));
  EXPECT_TRUE(r->Read(kChunk, other).ok());  // the other chunk too
  EXPECT_EQ(0, std::memcmp(other.data(), image.data() + kChunk, other.size()));
}

}  // namespace
}  // namespace backupfs
