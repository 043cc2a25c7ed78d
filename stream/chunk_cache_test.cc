#include "stream/chunk_cache.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

std::shared_ptr<const DecodedChunk> Chunk(size_t size) {
  auto c = std::make_shared<DecodedChunk>();
  c->bytes.reset(new uint8_t[size]);
  c->size = size;
  return c;
}

TEST(ChunkCacheTest, EvictsLeastRecentlyUsedWithinTheBound) {
  ChunkCache cache(300);
  const uint64_t a = ChunkCache::NewOwnerId(), b = ChunkCache::NewOwnerId();
  cache.Put(a, 0, Chunk(100));
  cache.Put(b, 0, Chunk(100));  // same offset, other reader: another entry
  cache.Put(a, 100, Chunk(100));
  EXPECT_EQ(cache.bytes(), 300u);
  EXPECT_NE(cache.Get(a, 0), nullptr);  // now most recent
  cache.Put(a, 200, Chunk(100));        // evicts (b, 0)
  EXPECT_EQ(cache.Get(b, 0), nullptr);
  EXPECT_NE(cache.Get(a, 0), nullptr);
  EXPECT_NE(cache.Get(a, 100), nullptr);
  EXPECT_NE(cache.Get(a, 200), nullptr);
  EXPECT_EQ(cache.bytes(), 300u);
}

TEST(ChunkCacheTest, NeverHoldsAChunkLargerThanTheBound) {
  ChunkCache cache(50);
  cache.Put(ChunkCache::NewOwnerId(), 0, Chunk(51));
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(ChunkCacheTest, KeepsAChunkAliveForItsUsersAfterEviction) {
  ChunkCache cache(100);
  const uint64_t a = ChunkCache::NewOwnerId();
  cache.Put(a, 0, Chunk(100));
  auto held = cache.Get(a, 0);
  cache.Put(a, 100, Chunk(100));
  EXPECT_EQ(cache.Get(a, 0), nullptr);
  EXPECT_EQ(held->size, 100u);  // still valid for the reader that holds it
}

}  // namespace
}  // namespace backupfs
