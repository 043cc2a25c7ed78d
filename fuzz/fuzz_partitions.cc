// libFuzzer target: the input is a disk; ProbeDisk finds its partitions through libblkid and
// DescribeLayout lists them. Nothing may crash, hang or read outside the input.
#include <cstdint>
#include <vector>

#include "guest/partitions.h"

using namespace backupfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  MemorySource disk(std::vector<uint8_t>(data, data + size), "fuzz-disk");
  Result<DiskLayout> layout = ProbeDisk(disk);
  if (!layout.ok()) return 0;
  if (layout->partitions.size() > kMaxPartitions) __builtin_trap();
  for (const Partition& p : layout->partitions) {
    if (p.offset > size || p.size > size - p.offset) __builtin_trap();  // outside the disk
  }
  (void)DescribeLayout(*layout);
  return 0;
}
