#include "capture/extents.h"

#include <algorithm>

namespace backupfs {
namespace {

// What a backup writes for an allocation kind: zeros however the server stores them.
ExtentKind FrameKind(ExtentKind allocation) {
  return allocation == ExtentKind::kData ? ExtentKind::kData : ExtentKind::kZero;
}

}  // namespace

ExtentKind AllocationKind(uint32_t flags) {
  if (flags & kNbdStateHole) return ExtentKind::kHole;
  if (flags & kNbdStateZero) return ExtentKind::kZero;
  return ExtentKind::kData;
}

void AppendExtent(ExtentList& list, const Extent& e) {
  if (e.length == 0) return;
  if (!list.empty() && list.back().kind == e.kind && list.back().end() == e.offset) {
    list.back().length += e.length;
    return;
  }
  list.push_back(e);
}

void AppendRange(RangeList& list, const Range& r) {
  if (r.length == 0) return;
  if (!list.empty() && r.offset <= list.back().end()) {
    Range& last = list.back();
    last.length = std::max(last.end(), r.end()) - last.offset;
    return;
  }
  list.push_back(r);
}

ExtentList MergeExtents(ExtentList list) {
  std::stable_sort(list.begin(), list.end(),
                   [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  ExtentList out;
  for (Extent e : list) {
    if (!out.empty() && e.offset < out.back().end()) {
      Extent& last = out.back();
      if (e.kind == last.kind) {
        last.length = std::max(last.end(), e.end()) - last.offset;
        continue;
      }
      // Different kinds overlap: the earlier extent keeps the overlap.
      if (e.end() <= last.end()) continue;
      e.length = e.end() - last.end();
      e.offset = last.end();
    }
    AppendExtent(out, e);
  }
  return out;
}

ExtentList FullFrames(std::span<const Extent> allocation) {
  ExtentList out;
  for (const Extent& e : allocation) AppendExtent(out, {e.offset, e.length, FrameKind(e.kind)});
  return out;
}

ExtentList IncrementalFrames(std::span<const Range> dirty, std::span<const Extent> allocation) {
  ExtentList out;
  size_t first = 0;  // the first allocation extent that may meet the current dirty range
  for (const Range& d : dirty) {
    while (first < allocation.size() && allocation[first].end() <= d.offset) ++first;
    for (size_t i = first; i < allocation.size() && allocation[i].offset < d.end(); ++i) {
      const uint64_t begin = std::max(d.offset, allocation[i].offset);
      const uint64_t end = std::min(d.end(), allocation[i].end());
      AppendExtent(out, {begin, end - begin, FrameKind(allocation[i].kind)});
    }
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Extent& e) {
  static constexpr const char* kNames[] = {"data", "zero", "hole"};
  return os << kNames[static_cast<int>(e.kind)] << " [" << e.offset << ", +" << e.length << ")";
}

std::ostream& operator<<(std::ostream& os, const Range& r) {
  return os << "[" << r.offset << ", +" << r.length << ")";
}

uint64_t DataBytes(std::span<const Extent> frames) {
  uint64_t total = 0;
  for (const Extent& e : frames) {
    if (e.kind == ExtentKind::kData) total += e.length;
  }
  return total;
}

}  // namespace backupfs
