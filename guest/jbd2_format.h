// The on-disk layout of a jbd2 journal (ext3/ext4), as the kernel's include/linux/jbd2.h defines
// it. Every field is big-endian. Offsets are in bytes from the start of the block.
//
// Journal block 0 is the superblock; the log occupies blocks [s_first, last) where last is
// s_maxlen, less the fast-commit area when FAST_COMMIT is on. Every log block that is not
// journalled data starts with a 12-byte header {magic, blocktype, sequence}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace backupfs::jbd2 {

inline constexpr uint32_t kMagic = 0xc03b3998;

enum BlockType : uint32_t {
  kDescriptor = 1,
  kCommit = 2,
  kSuperblockV1 = 3,
  kSuperblockV2 = 4,
  kRevoke = 5,
};

// Block header, every log block but data.
inline constexpr size_t kHeaderMagic = 0, kHeaderType = 4, kHeaderSequence = 8, kHeaderSize = 12;

// Superblock (journal_superblock_t, 1024 bytes).
inline constexpr size_t kSuperSize = 1024;
inline constexpr size_t kSbBlockSize = 12, kSbMaxLen = 16, kSbFirst = 20, kSbSequence = 24,
                        kSbStart = 28, kSbFeatureCompat = 36, kSbFeatureIncompat = 40, kSbUuid = 48,
                        kSbChecksumType = 80, kSbNumFcBlocks = 84, kSbChecksum = 252;
inline constexpr size_t kUuidSize = 16;

inline constexpr uint32_t kCompatChecksum = 0x1;  // v1 transaction checksums (crc32_be)
inline constexpr uint32_t kIncompatRevoke = 0x1, kIncompat64Bit = 0x2, kIncompatAsyncCommit = 0x4,
                          kIncompatCsumV2 = 0x8, kIncompatCsumV3 = 0x10, kIncompatFastCommit = 0x20;
inline constexpr uint32_t kKnownIncompat = kIncompatRevoke | kIncompat64Bit | kIncompatAsyncCommit |
                                           kIncompatCsumV2 | kIncompatCsumV3 | kIncompatFastCommit;
inline constexpr uint8_t kChecksumTypeCrc32c = 4;
// s_num_fc_blks == 0 means the kernel's default fast-commit area.
inline constexpr uint32_t kDefaultFastCommitBlocks = 256;

// Descriptor tags follow the header. journal_block_tag3_t (CSUM_V3, 16 bytes):
// blocknr(4) flags(4) blocknr_high(4) checksum(4). journal_block_tag_t otherwise: blocknr(4)
// checksum(2) flags(2) [blocknr_high(4) with 64BIT], plus 2 unused bytes with CSUM_V2. In both
// the low 16 flag bits sit at offset 6 and blocknr_high at offset 8.
inline constexpr size_t kTagBlockNr = 0, kTagFlags16 = 6, kTagBlockNrHigh = 8, kTag3Checksum = 12,
                        kTagChecksum16 = 4;
inline constexpr uint16_t kFlagEscape = 1, kFlagSameUuid = 2, kFlagLastTag = 8;

// Descriptor and revoke blocks end in a 4-byte crc32c tail with CSUM_V2/V3.
inline constexpr size_t kTailSize = 4;

// Commit block (struct commit_header).
inline constexpr size_t kCommitChecksum = 16, kCommitSec = 48;

// Revoke block: header, r_count (bytes used, header included), then 4- or 8-byte block numbers.
inline constexpr size_t kRevokeCount = 12, kRevokeHeaderSize = 16;

// Bytes of one descriptor tag, as the kernel's journal_tag_bytes().
inline size_t TagBytes(uint32_t incompat) {
  if (incompat & kIncompatCsumV3) return 16;
  size_t size = 12;
  if (incompat & kIncompatCsumV2) size += 2;
  return (incompat & kIncompat64Bit) ? size : size - 4;
}

// Callers check that the field lies inside `b`.
inline uint16_t Be16(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}
inline uint32_t Be32(std::span<const uint8_t> b, size_t off) {
  return uint32_t{b[off]} << 24 | uint32_t{b[off + 1]} << 16 | uint32_t{b[off + 2]} << 8 |
         uint32_t{b[off + 3]};
}
inline uint64_t Be64(std::span<const uint8_t> b, size_t off) {
  return uint64_t{Be32(b, off)} << 32 | Be32(b, off + 4);
}
inline void PutBe32(std::span<uint8_t> b, size_t off, uint32_t v) {
  b[off] = static_cast<uint8_t>(v >> 24);
  b[off + 1] = static_cast<uint8_t>(v >> 16);
  b[off + 2] = static_cast<uint8_t>(v >> 8);
  b[off + 3] = static_cast<uint8_t>(v);
}

// Transaction ids wrap: a is after b when the signed distance is positive (tid_gt, tid_geq).
inline bool TidGt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }
inline bool TidGeq(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

}  // namespace backupfs::jbd2
