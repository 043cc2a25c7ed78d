// libFuzzer target: the input is a disk; ProbeDisk finds its partitions through libblkid and
// DescribeLayout lists them. Nothing may crash, hang, allocate without bound or read outside
// the input. Each input is probed twice: as it is, and as the two ends of a 1 TiB disk of
// zeros, where a table's on-disk sizes are no longer capped by the input's size.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "guest/partitions.h"

using namespace backupfs;

namespace {

// The first half of `bytes` at the start of a large disk, the second half at its end.
class SpreadSource final : public ByteSource {
 public:
  SpreadSource(const uint8_t* data, size_t size, uint64_t disk_size)
      : head_(data, data + size / 2), tail_(data + size / 2, data + size), size_(disk_size) {}
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > size_ || out.size() > size_ - offset) return PastEnd(*this, offset, out.size());
    if (!out.empty()) std::memset(out.data(), 0, out.size());
    Copy(head_, 0, offset, out);
    Copy(tail_, size_ - tail_.size(), offset, out);
    return Status::Ok();
  }

 private:
  // The part of `part` (placed at `at`) that overlaps [offset, offset + out.size()).
  static void Copy(const std::vector<uint8_t>& part, uint64_t at, uint64_t offset,
                   std::span<uint8_t> out) {
    const uint64_t begin = std::max(at, offset);
    const uint64_t end = std::min(at + part.size(), offset + out.size());
    if (begin < end)
      std::memcpy(out.data() + (begin - offset), part.data() + (begin - at), end - begin);
  }

  const std::vector<uint8_t> head_, tail_;
  const uint64_t size_;
  const std::string name_ = "fuzz-spread-disk";
};

void Check(const ByteSource& disk) {
  Result<DiskLayout> layout = ProbeDisk(disk);
  if (!layout.ok()) return;
  if (layout->partitions.size() > kMaxPartitions) __builtin_trap();
  for (const Partition& p : layout->partitions) {
    if (p.offset > disk.size() || p.size > disk.size() - p.offset) __builtin_trap();
  }
  (void)DescribeLayout(*layout);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Check(BufferSource(std::vector<uint8_t>(data, data + size), "fuzz-disk"));
  Check(SpreadSource(data, size, uint64_t{1} << 40));
  return 0;
}
