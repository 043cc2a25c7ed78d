// A disk's partitions and what each holds, as libblkid reports them (MBR with extended and
// logical partitions, GPT, and the nested tables blkid knows), or the filesystem of a disk
// that has no partition table.
//
// libblkid reads through a file descriptor, not a callback: the probe runs over a sparse
// memfd the size of the disk into which only the regions a table or a superblock can live in
// are copied (the first and last MiB of the disk and of each partition found, and the chain
// of extended boot records), found by probing again until nothing new is found.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "guest/byte_source.h"
#include "stream/status.h"

namespace backupfs {

struct Partition {
  // blkid's number (GPT: the entry's index + 1; MBR: 1-4 primary, 5... logical); 0 is the
  // whole disk of a disk without a partition table.
  int number = 0;
  uint64_t offset = 0;     // bytes from the start of the disk
  uint64_t size = 0;       // bytes
  bool container = false;  // an MBR extended partition: it holds the logical ones
  // The table entry: PART_ENTRY_TYPE ("0x83", or a GPT type GUID), PART_ENTRY_NAME (GPT),
  // PART_ENTRY_UUID. Empty for the whole disk.
  std::string entry_type, entry_name, entry_uuid;
  // What blkid finds inside: TYPE ("ext4", "ntfs", "xfs", "swap", "crypto_LUKS", ...), LABEL,
  // UUID, VERSION; all empty when nothing is recognised.
  std::string type, label, uuid, version;
};

struct DiskLayout {
  std::string table;  // PTTYPE: "gpt", "dos", ..., or "" for none
  std::string table_uuid;
  // Partitions by number; the whole disk (number 0) when there is no table or when the table
  // lists no partition (blkid reports an exFAT boot sector as an empty "dos" table).
  std::vector<Partition> partitions;
  // What was not shown and why, for the mount log: partitions past the disk's end, more
  // partitions than kMaxPartitions, overlapping entries (shown, but named here).
  std::vector<std::string> problems;
};

// More than this many partitions (a hostile table claiming 10,000) are not shown.
inline constexpr size_t kMaxPartitions = 256;

// Never fails on what the disk holds (an unreadable or absurd table is a problem in the
// layout, and the disk is shown as unpartitioned); fails only when the disk cannot be read.
Result<DiskLayout> ProbeDisk(const ByteSource& disk);

// One line per partition, in blkid's export style, for the mount's listing file:
//   1: START=1048576 SIZE=104857600 TYPE="ext4" LABEL="root" PART_ENTRY_TYPE="0x83" ...
std::string DescribeLayout(const DiskLayout& layout);

}  // namespace backupfs
