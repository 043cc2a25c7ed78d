#include "capture/extents.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace backupfs {
namespace {

constexpr auto D = ExtentKind::kData;
constexpr auto Z = ExtentKind::kZero;
constexpr auto H = ExtentKind::kHole;
constexpr uint64_t kMax = UINT64_MAX;

TEST(AllocationKind, HoleWinsOverZeroOverData) {
  EXPECT_EQ(AllocationKind(0), D);
  EXPECT_EQ(AllocationKind(kNbdStateZero), Z);
  EXPECT_EQ(AllocationKind(kNbdStateHole), H);
  EXPECT_EQ(AllocationKind(kNbdStateHole | kNbdStateZero), H);
  EXPECT_EQ(AllocationKind(0x80), D);  // unknown bits do not matter
}

TEST(AppendExtent, MergesContiguousSameKind) {
  ExtentList l;
  AppendExtent(l, {0, 10, D});
  AppendExtent(l, {10, 5, D});
  AppendExtent(l, {15, 5, Z});
  AppendExtent(l, {25, 5, Z});  // a gap: not merged
  EXPECT_EQ(l, (ExtentList{{0, 15, D}, {15, 5, Z}, {25, 5, Z}}));
}

TEST(AppendExtent, DropsEmpty) {
  ExtentList l;
  AppendExtent(l, {7, 0, D});
  EXPECT_TRUE(l.empty());
}

TEST(AppendRange, MergesTouchingAndOverlapping) {
  RangeList l;
  AppendRange(l, {0, 10});
  AppendRange(l, {10, 10});
  AppendRange(l, {15, 2});  // inside
  AppendRange(l, {30, 1});
  EXPECT_EQ(l, (RangeList{{0, 20}, {30, 1}}));
}

TEST(MergeExtents, Empty) { EXPECT_TRUE(MergeExtents({}).empty()); }

TEST(MergeExtents, SortsAndMergesNeighbours) {
  ExtentList in{{20, 10, D}, {0, 10, D}, {10, 10, D}, {30, 1, H}, {31, 1, H}};
  EXPECT_EQ(MergeExtents(in), (ExtentList{{0, 30, D}, {30, 2, H}}));
}

TEST(MergeExtents, OverlappingSameKindBecomesOne) {
  ExtentList in{{0, 100, Z}, {50, 100, Z}, {60, 10, Z}};
  EXPECT_EQ(MergeExtents(in), (ExtentList{{0, 150, Z}}));
}

TEST(MergeExtents, OverlappingDifferentKindsEarlierWins) {
  ExtentList in{{0, 100, D}, {50, 100, Z}, {60, 10, H}};
  EXPECT_EQ(MergeExtents(in), (ExtentList{{0, 100, D}, {100, 50, Z}}));
}

TEST(FullFrames, HolesAndZerosBecomeZeroFrames) {
  ExtentList alloc{{0, 4096, D}, {4096, 512, H}, {4608, 512, Z}, {5120, 100, D}};
  EXPECT_EQ(FullFrames(alloc), (ExtentList{{0, 4096, D}, {4096, 1024, Z}, {5120, 100, D}}));
}

TEST(FullFrames, Empty) { EXPECT_TRUE(FullFrames({}).empty()); }

TEST(IncrementalFrames, NothingDirtyNothingWritten) {
  ExtentList alloc{{0, 1 << 20, D}};
  EXPECT_TRUE(IncrementalFrames({}, alloc).empty());
}

TEST(IncrementalFrames, EverythingDirtyEqualsFull) {
  ExtentList alloc{{0, 65536, D}, {65536, 65536, H}, {131072, 1000, Z}, {132072, 5, D}};
  RangeList dirty{{0, 132077}};
  EXPECT_EQ(IncrementalFrames(dirty, alloc), FullFrames(alloc));
}

TEST(IncrementalFrames, DirtyHoleBecomesZeroFrame) {
  // A range written after the last backup and discarded since: must read as zeros on restore.
  ExtentList alloc{{0, 100, D}, {100, 100, H}, {200, 100, D}};
  RangeList dirty{{100, 100}};
  EXPECT_EQ(IncrementalFrames(dirty, alloc), (ExtentList{{100, 100, Z}}));
}

TEST(IncrementalFrames, UnalignedPiecesAcrossBoundaries) {
  ExtentList alloc{{0, 1000, D}, {1000, 24, Z}, {1024, 3072, D}, {4096, 4096, H}};
  RangeList dirty{{3, 5}, {990, 40}, {4000, 200}, {8000, 96}};
  EXPECT_EQ(IncrementalFrames(dirty, alloc), (ExtentList{{3, 5, D},
                                                         {990, 10, D},
                                                         {1000, 24, Z},
                                                         {1024, 6, D},
                                                         {4000, 96, D},
                                                         {4096, 104, Z},
                                                         {8000, 96, Z}}));
}

TEST(IncrementalFrames, BoundariesThatTouchDoNotOverlap) {
  ExtentList alloc{{0, 10, D}, {10, 10, H}, {20, 10, D}};
  RangeList dirty{{10, 10}};  // exactly the hole, touching both data extents
  EXPECT_EQ(IncrementalFrames(dirty, alloc), (ExtentList{{10, 10, Z}}));
  RangeList right_after{{30, 5}};  // past the allocation: nothing to say
  EXPECT_TRUE(IncrementalFrames(right_after, alloc).empty());
}

TEST(IncrementalFrames, ManyDirtyRangesInOneExtentMerge) {
  ExtentList alloc{{0, 1 << 20, D}};
  RangeList dirty{{0, 65536}, {65536, 65536}, {262144, 65536}};
  EXPECT_EQ(IncrementalFrames(dirty, alloc), (ExtentList{{0, 131072, D}, {262144, 65536, D}}));
}

TEST(IncrementalFrames, OneDirtyRangeOverManyExtents) {
  ExtentList alloc;
  for (uint64_t i = 0; i < 1000; ++i) alloc.push_back({i * 10, 10, i % 2 ? H : D});
  RangeList dirty{{5, 9990}};
  ExtentList frames = IncrementalFrames(dirty, alloc);
  ASSERT_EQ(frames.size(), 1000u);  // both end extents are cut, none merge
  EXPECT_EQ(frames.front(), (Extent{5, 5, D}));
  EXPECT_EQ(frames[1], (Extent{10, 10, Z}));
  EXPECT_EQ(frames.back(), (Extent{9990, 5, Z}));
}

TEST(IncrementalFrames, SixtyFourBitEdgeOffsets) {
  const uint64_t top = kMax - 8192;  // the last 8 KiB below 2^64 - 1
  ExtentList alloc{{0, top, H}, {top, 4096, D}, {top + 4096, 4096, Z}};
  RangeList dirty{{top - 512, 1024}, {kMax - 100, 100}};
  EXPECT_EQ(IncrementalFrames(dirty, alloc),
            (ExtentList{{top - 512, 512, Z}, {top, 512, D}, {kMax - 100, 100, Z}}));
  EXPECT_EQ(alloc.back().end(), kMax);
}

TEST(DataBytes, CountsOnlyData) {
  EXPECT_EQ(DataBytes(ExtentList{{0, 10, D}, {10, 5, Z}, {20, 7, D}, {30, 1, H}}), 17u);
  EXPECT_EQ(DataBytes({}), 0u);
}

}  // namespace
}  // namespace backupfs
