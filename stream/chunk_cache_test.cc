#include "stream/chunk_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

namespace backupfs {
namespace {

using ChunkPtr = ChunkCache::ChunkPtr;

// The byte a test decoder writes at `i` of chunk `offset`: every chunk's content differs.
uint8_t Pattern(uint64_t offset, size_t i) { return static_cast<uint8_t>(offset * 31 + i * 7); }

Status FillPattern(uint64_t offset, std::span<uint8_t> out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = Pattern(offset, i);
  return Status::Ok();
}

bool HasPattern(const DecodedChunk& c, uint64_t offset) {
  for (size_t i = 0; i < c.size; ++i) {
    if (c.bytes[i] != Pattern(offset, i)) return false;
  }
  return true;
}

// Decodes chunk (owner, offset) of `size` bytes unless it is kept.
ChunkPtr Fill(ChunkCache& cache, uint64_t owner, uint64_t offset, size_t size) {
  auto r = cache.GetOrDecode(owner, offset, size,
                             [&](std::span<uint8_t> out) { return FillPattern(offset, out); });
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : nullptr;
}

// Blocks a decoder until `n` other requests wait for its chunk (or 10 s pass, so that a cache
// that does not share decodes fails the test instead of hanging it).
void AwaitWaiters(const ChunkCache& cache, uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (cache.stats().shared < n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Runs `fn(i)` on `n` threads at once and joins them.
template <typename Fn>
void OnThreads(int n, Fn fn) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back(fn, i);
  for (auto& t : threads) t.join();
}

TEST(ChunkCacheTest, EvictsLeastRecentlyUsedWithinTheBound) {
  ChunkCache cache(300);
  const uint64_t a = ChunkCache::NewOwnerId(), b = ChunkCache::NewOwnerId();
  Fill(cache, a, 0, 100);
  Fill(cache, b, 0, 100);  // same offset, other reader: another entry
  Fill(cache, a, 100, 100);
  EXPECT_EQ(cache.bytes(), 300u);
  EXPECT_NE(cache.Get(a, 0), nullptr);  // now most recent
  Fill(cache, a, 200, 100);             // evicts (b, 0)
  EXPECT_EQ(cache.Get(b, 0), nullptr);
  EXPECT_NE(cache.Get(a, 0), nullptr);
  EXPECT_NE(cache.Get(a, 100), nullptr);
  EXPECT_NE(cache.Get(a, 200), nullptr);
  EXPECT_EQ(cache.bytes(), 300u);
  EXPECT_EQ(cache.stats().decodes, 4u);
}

TEST(ChunkCacheTest, AKeptChunkIsNotDecodedAgain) {
  ChunkCache cache(1000);
  const uint64_t a = ChunkCache::NewOwnerId();
  ChunkPtr first = Fill(cache, a, 0, 100);
  ChunkPtr again = Fill(cache, a, 0, 100);
  EXPECT_EQ(first, again);
  EXPECT_EQ(cache.stats().decodes, 1u);
  EXPECT_EQ(cache.stats().hits, 1u);
}

TEST(ChunkCacheTest, NeverKeepsAChunkLargerThanTheBound) {
  ChunkCache cache(50);
  ChunkPtr c = Fill(cache, ChunkCache::NewOwnerId(), 0, 51);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(HasPattern(*c, 0));  // delivered all the same
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(ChunkCacheTest, KeepsAChunkAliveForItsUsersAfterEviction) {
  ChunkCache cache(100);
  const uint64_t a = ChunkCache::NewOwnerId();
  ChunkPtr held = Fill(cache, a, 0, 100);
  Fill(cache, a, 100, 100);
  EXPECT_EQ(cache.Get(a, 0), nullptr);
  EXPECT_EQ(held->size, 100u);  // still valid for the reader that holds it
  EXPECT_TRUE(HasPattern(*held, 0));
}

TEST(ChunkCacheTest, ConcurrentRequestsOfOneChunkShareOneDecode) {
  constexpr int kThreads = 8;
  ChunkCache cache(1u << 20);
  const uint64_t a = ChunkCache::NewOwnerId();
  std::atomic<int> decodes{0};
  std::vector<ChunkPtr> got(kThreads);
  OnThreads(kThreads, [&](int i) {
    auto r = cache.GetOrDecode(a, 4096, 65536, [&](std::span<uint8_t> out) {
      ++decodes;
      AwaitWaiters(cache, kThreads - 1);  // every other thread asks while this one decodes
      return FillPattern(4096, out);
    });
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    got[i] = *r;
  });
  EXPECT_EQ(decodes.load(), 1);
  EXPECT_EQ(cache.stats().decodes, 1u);
  EXPECT_EQ(cache.stats().shared, kThreads - 1u);
  for (const ChunkPtr& c : got) {
    ASSERT_EQ(c, got[0]);  // the very same chunk, not a copy
  }
  EXPECT_TRUE(HasPattern(*got[0], 4096));
}

TEST(ChunkCacheTest, AFailedDecodeReachesEveryWaiterAndIsNotKept) {
  constexpr int kThreads = 6;
  ChunkCache cache(1u << 20);
  const uint64_t a = ChunkCache::NewOwnerId();
  std::atomic<int> decodes{0};
  std::vector<Status> got(kThreads);
  OnThreads(kThreads, [&](int i) {
    auto r = cache.GetOrDecode(a, 0, 4096, [&](std::span<uint8_t> out) {
      ++decodes;
      AwaitWaiters(cache, kThreads - 1);
      std::memset(out.data(), 0xAA, out.size());  // partly decoded bytes must not leak out
      return Status::Corruption("vda.full.data: offset 0: checksum mismatch");
    });
    got[i] = r.status();
  });
  EXPECT_EQ(decodes.load(), 1);
  for (const Status& s : got) {
    EXPECT_EQ(s.code(), StatusCode::kCorruption);
    EXPECT_EQ(s.message(), "vda.full.data: offset 0: checksum mismatch");
  }
  EXPECT_EQ(cache.Get(a, 0), nullptr);
  EXPECT_EQ(cache.bytes(), 0u);
  // The next request tries again (an I/O error may be transient).
  ChunkPtr later = Fill(cache, a, 0, 4096);
  ASSERT_NE(later, nullptr);
  EXPECT_TRUE(HasPattern(*later, 0));
  EXPECT_EQ(cache.stats().decodes, 2u);
}

TEST(ChunkCacheTest, ADecoderExceptionReachesEveryWaiter) {
  constexpr int kThreads = 4;
  ChunkCache cache(1u << 20);
  const uint64_t a = ChunkCache::NewOwnerId();
  std::atomic<int> thrown{0};
  OnThreads(kThreads, [&](int) {
    try {
      (void)cache.GetOrDecode(a, 0, 4096, [&](std::span<uint8_t>) -> Status {
        AwaitWaiters(cache, kThreads - 1);
        throw std::runtime_error("out of memory");
      });
    } catch (const std::runtime_error&) {
      ++thrown;
    }
  });
  EXPECT_EQ(thrown.load(), kThreads);
  EXPECT_NE(Fill(cache, a, 0, 4096), nullptr);  // no flight left behind
}

TEST(ChunkCacheTest, ALargerThanTheBoundChunkReachesEveryWaiter) {
  constexpr int kThreads = 4;
  ChunkCache cache(1000);
  const uint64_t a = ChunkCache::NewOwnerId();
  std::vector<ChunkPtr> got(kThreads);
  OnThreads(kThreads, [&](int i) {
    auto r = cache.GetOrDecode(a, 0, 5000, [&](std::span<uint8_t> out) {
      AwaitWaiters(cache, kThreads - 1);
      return FillPattern(0, out);
    });
    ASSERT_TRUE(r.ok());
    got[i] = *r;
  });
  for (const ChunkPtr& c : got) EXPECT_TRUE(HasPattern(*c, 0));
  EXPECT_EQ(cache.stats().decodes, 1u);
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(ChunkCacheTest, ReusesTheBufferOfADroppedChunk) {
  ChunkCache cache(8 * 4096);  // room for 8 chunks, 1 spare
  const uint64_t a = ChunkCache::NewOwnerId();
  for (uint64_t i = 0; i < 8; ++i) Fill(cache, a, i * 4096, 4096);
  EXPECT_EQ(cache.stats().reused, 0u);
  for (uint64_t i = 8; i < 20; ++i) {
    ChunkPtr c = Fill(cache, a, i * 4096, 4096);  // evicts one, whose buffer the next takes
    EXPECT_TRUE(HasPattern(*c, i * 4096));
  }
  EXPECT_GE(cache.stats().reused, 11u);
  EXPECT_LE(cache.spare_bytes(), 4096u);
}

TEST(ChunkCacheTest, NeverReusesABufferAReaderStillHolds) {
  ChunkCache cache(4096);
  const uint64_t a = ChunkCache::NewOwnerId();
  ChunkPtr held = Fill(cache, a, 0, 4096);
  for (uint64_t i = 1; i < 5; ++i) Fill(cache, a, i * 4096, 4096);  // evicts `held` and others
  EXPECT_TRUE(HasPattern(*held, 0));
}

// Many threads, more chunks than fit, readers holding chunks while they check them: the kept
// and spare bytes stay within their bounds, and no chunk's bytes change while it is held.
TEST(ChunkCacheTest, StaysBoundedUnderPressure) {
  constexpr uint64_t kCapacity = 6 * 65536;
  constexpr int kThreads = 8;
  ChunkCache cache(kCapacity);
  const uint64_t a = ChunkCache::NewOwnerId();
  std::atomic<int> bad{0}, over{0};
  OnThreads(kThreads, [&](int t) {
    uint64_t x = 88172645463325252ull + t;
    for (int n = 0; n < 400; ++n) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const uint64_t offset = (x % 24) * 65536;
      const size_t size = 32768 + (offset / 65536) % 3 * 16384;  // a few sizes, fixed per chunk
      auto r = cache.GetOrDecode(a, offset, size,
                                 [&](std::span<uint8_t> out) { return FillPattern(offset, out); });
      if (!r.ok() || (*r)->size != size || !HasPattern(**r, offset)) ++bad;
      if (cache.bytes() > kCapacity || cache.spare_bytes() > kCapacity / 8) ++over;
    }
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(over.load(), 0);
  EXPECT_LE(cache.bytes(), kCapacity);
  const ChunkCache::Stats s = cache.stats();
  EXPECT_EQ(s.hits + s.decodes + s.shared, kThreads * 400u);
  EXPECT_GT(s.reused, 0u);
}

}  // namespace
}  // namespace backupfs

namespace backupfs {
namespace {

TEST(ChunkCachePutTest, PutKeepsWithinTheBoundAndNeverReplaces) {
  ChunkCache cache(300);
  const uint64_t a = ChunkCache::NewOwnerId();
  auto first = cache.NewChunk(100);
  ASSERT_TRUE(FillPattern(0, std::span(first->bytes.get(), 100)).ok());
  cache.Put(a, 0, first);
  auto other = cache.NewChunk(100);
  std::memset(other->bytes.get(), 0xee, 100);
  cache.Put(a, 0, other);  // the kept one stays
  ASSERT_NE(cache.Get(a, 0), nullptr);
  EXPECT_TRUE(HasPattern(*cache.Get(a, 0), 0));
  for (uint64_t off = 1; off <= 3; ++off) {
    auto c = cache.NewChunk(100);
    ASSERT_TRUE(FillPattern(off, std::span(c->bytes.get(), 100)).ok());
    cache.Put(a, off, c);
  }
  EXPECT_LE(cache.bytes(), 300u);
  EXPECT_EQ(cache.Get(a, 0), nullptr);  // the least recently used went first
  EXPECT_NE(cache.Get(a, 3), nullptr);
  cache.Put(a, 9, cache.NewChunk(400));  // larger than the whole cache: not kept
  EXPECT_EQ(cache.Get(a, 9), nullptr);
}

TEST(ChunkCachePutTest, SideBytesStayWithinTheCapacity) {
  ChunkCache cache(1000);
  EXPECT_TRUE(cache.TakeSideBytes(600));
  EXPECT_FALSE(cache.TakeSideBytes(500));
  EXPECT_TRUE(cache.TakeSideBytes(400));
  EXPECT_EQ(cache.side_bytes(), 1000u);
  cache.GiveSideBytes(600);
  EXPECT_TRUE(cache.TakeSideBytes(500));
  EXPECT_EQ(cache.side_bytes(), 900u);
}

}  // namespace
}  // namespace backupfs
