// Extent maps of an NBD export and the rule that turns them into the frames of a backup.
//
// Pure logic, no NBD: block_status.cc fills the maps from the server's replies, nbd_copy.cc
// reads the data frames. Every list here is sorted by offset and non-overlapping, and every
// offset + length fits in 64 bits (end() <= UINT64_MAX).
#pragma once

#include <cstdint>
#include <ostream>
#include <span>
#include <vector>

namespace backupfs {

// NBD_STATE_HOLE and NBD_STATE_ZERO of the base:allocation context.
inline constexpr uint32_t kNbdStateHole = 1;
inline constexpr uint32_t kNbdStateZero = 2;
// Bit 0 of a qemu:dirty-bitmap:* context: the range changed since the bitmap was created.
inline constexpr uint32_t kNbdStateDirty = 1;

enum class ExtentKind : uint8_t {
  kData,  // allocated bytes: read them
  kZero,  // allocated (or not) but reads as zeros
  kHole,  // unallocated, reads as zeros
};

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  ExtentKind kind = ExtentKind::kData;

  uint64_t end() const { return offset + length; }
  bool operator==(const Extent&) const = default;
};
using ExtentList = std::vector<Extent>;

// A plain byte range, e.g. a dirty range of a bitmap.
struct Range {
  uint64_t offset = 0;
  uint64_t length = 0;

  uint64_t end() const { return offset + length; }
  bool operator==(const Range&) const = default;
};
using RangeList = std::vector<Range>;

// The kind base:allocation flags describe: a hole wins over zero, zero over data.
ExtentKind AllocationKind(uint32_t flags);

// Appends `e` to `list`, extending the last extent when `e` continues it with the same kind.
// Empty extents are dropped. Precondition: e.offset >= list.back().end().
void AppendExtent(ExtentList& list, const Extent& e);
// The same for ranges: touching or overlapping ranges become one.
void AppendRange(RangeList& list, const Range& r);

// Merges neighbouring extents of the same kind. Overlapping extents of the same kind become
// one; where kinds differ, the earlier extent keeps the overlap. Input in any order.
ExtentList MergeExtents(ExtentList list);

// Frames of a full or copy backup: data stays data, holes and zeros become zero frames.
ExtentList FullFrames(std::span<const Extent> allocation);

// Frames of an inc or diff backup: dirty ranges intersected with the allocation. Dirty data is
// read; dirty holes and zeros (trimmed since the last backup) become zero frames so the restore
// point is byte-exact; clean ranges produce nothing. Ranges the allocation does not cover
// produce nothing either.
ExtentList IncrementalFrames(std::span<const Range> dirty, std::span<const Extent> allocation);

// "data [offset, +length)", for messages and test failures.
std::ostream& operator<<(std::ostream& os, const Extent& e);
std::ostream& operator<<(std::ostream& os, const Range& r);

// Sum of the lengths of kData extents: the stream's dataSize.
uint64_t DataBytes(std::span<const Extent> frames);

}  // namespace backupfs
