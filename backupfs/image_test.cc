#include "backupfs/image.h"

#include <gtest/gtest.h>

#include <random>

namespace backupfs {
namespace {

// Owner of each byte in [0, n): -1 for a hole, else the extent's file*1000 + chunk.
std::vector<int> Owners(const std::vector<ImageExtent>& extents, uint64_t n) {
  std::vector<int> owner(n, -1);
  for (const auto& e : extents) {
    for (uint64_t i = e.offset; i < e.end() && i < n; ++i) {
      owner[i] = static_cast<int>(e.file * 1000 + e.chunk);
    }
  }
  return owner;
}

std::vector<ImageExtent> RandomExtents(std::mt19937& rng, uint32_t file, uint64_t n) {
  std::vector<ImageExtent> out;
  uint64_t pos = rng() % 8;
  uint32_t chunk = 0;
  while (pos < n) {
    uint64_t len = 1 + rng() % 12;
    if (pos + len > n) break;
    if (rng() % 3 != 0) out.push_back({pos, len, rng() % 4 == 0, file, chunk++, 0});
    pos += len + (rng() % 2 ? rng() % 6 : 0);
  }
  return out;
}

TEST(OverlayTest, MatchesByteByByteOracle) {
  std::mt19937 rng(1);
  constexpr uint64_t kN = 120;
  for (int round = 0; round < 2000; ++round) {
    std::vector<ImageExtent> merged;
    std::vector<int> oracle(kN, -1);
    int files = 1 + static_cast<int>(rng() % 5);
    for (int f = 0; f < files; ++f) {
      auto top = RandomExtents(rng, static_cast<uint32_t>(f), kN);
      auto owners = Owners(top, kN);
      for (uint64_t i = 0; i < kN; ++i) {
        if (owners[i] >= 0) oracle[i] = owners[i];
      }
      merged = Overlay(merged, top);
    }
    ASSERT_EQ(Owners(merged, kN), oracle) << "round " << round;
    for (size_t i = 1; i < merged.size(); ++i) {
      ASSERT_LE(merged[i - 1].end(), merged[i].offset) << "round " << round;
      ASSERT_GT(merged[i].length, 0u);
    }
  }
}

TEST(OverlayTest, SliceKeepsChunkDelta) {
  std::vector<ImageExtent> base = {{0, 100, false, 0, 7, 0}};
  std::vector<ImageExtent> top = {{30, 10, false, 1, 0, 0}};
  auto m = Overlay(base, top);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[2].offset, 40u);
  EXPECT_EQ(m[2].chunk_delta, 40u);
  EXPECT_EQ(m[2].chunk, 7u);
}

}  // namespace
}  // namespace backupfs
