// Recovery of an ext3/4 journal (jbd2) in memory: what e2fsck or the kernel would write back
// to the filesystem when mounting a crash-consistent image, returned as block contents to lay
// over the image instead. Nothing is written.
//
// Follows the kernel's recovery (fs/jbd2/recovery.c): scan from s_start for the committed
// transactions with consecutive sequence numbers, collect revoke records, then take each
// journalled block of each committed transaction unless a revoke of the same or a later
// transaction names it. Descriptor tags in every layout (32/64-bit, csum v2/v3, escaped blocks,
// same-UUID), commit-block and tag checksums (crc32c) checked where the journal has them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "guest/byte_source.h"
#include "stream/status.h"

namespace backupfs {

struct JournalReplay {
  // Filesystem block number -> its contents after recovery (fs block size each).
  std::map<uint64_t, std::vector<uint8_t>> blocks;
  uint32_t transactions = 0;  // committed transactions replayed
  // What was not replayed and why (a fast-commit area, a bad checksum), for the mount log.
  std::vector<std::string> notes;
};

// `journal`: the journal inode's contents in logical block order (block 0 is the journal
// superblock). A clean journal (s_start == 0) replays nothing. A journal that is not jbd2, or
// whose superblock is absurd, is an error naming `journal`.
Result<JournalReplay> ReplayJournal(const ByteSource& journal, uint32_t fs_block_size);

}  // namespace backupfs
