#include "guest/jbd2_replay.h"

#include <ext2fs/ext2fs.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "guest/jbd2_format.h"

namespace backupfs {

namespace {

using namespace jbd2;

// What the superblock says, checked.
struct JournalSuper {
  uint32_t block_size = 0;
  uint32_t maxlen = 0;  // journal blocks, superblock included
  uint32_t first = 0;   // first log block
  uint32_t last = 0;    // one past the last log block (the fast-commit area follows)
  uint32_t sequence = 0;
  uint32_t start = 0;  // 0: clean
  uint32_t compat = 0;
  uint32_t incompat = 0;
  uint32_t fc_blocks = 0;
  uint32_t csum_seed = 0;  // crc32c of the journal UUID
  size_t tag_bytes = 0;

  bool Csum() const { return incompat & (kIncompatCsumV2 | kIncompatCsumV3); }
  bool Csum3() const { return incompat & kIncompatCsumV3; }
  bool Is64() const { return incompat & kIncompat64Bit; }
  uint32_t LogBlocks() const { return last - first; }
  // The log is circular: past its end comes s_first again.
  uint32_t Next(uint32_t block) const { return block + 1 >= last ? first : block + 1; }
};

struct Tag {
  uint64_t fs_block = 0;
  uint32_t log_block = 0;
  uint16_t flags = 0;
  uint32_t checksum = 0;  // 16 bits with CSUM_V2
};

struct Transaction {
  uint32_t tid = 0;
  std::vector<Tag> tags;
  std::vector<uint32_t> revoke_blocks;  // log blocks of its revoke blocks
};

uint32_t Crc32c(uint32_t seed, std::span<const uint8_t> bytes) {
  return ext2fs_crc32c_le(seed, bytes.data(), bytes.size());
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

Status Bad(const ByteSource& j, const std::string& what) {
  return Status::Corruption("journal " + j.name() + ": " + what);
}

Status CheckFeatures(const ByteSource& j, const JournalSuper& s, uint8_t checksum_type) {
  if (uint32_t unknown = s.incompat & ~kKnownIncompat)
    return Bad(j, "unknown incompatible journal features " + Hex(unknown));
  if ((s.incompat & kIncompatCsumV2) && (s.incompat & kIncompatCsumV3))
    return Bad(j, "both CSUM_V2 and CSUM_V3 are set");
  if (s.Csum() && (s.compat & kCompatChecksum))
    return Bad(j, "both v1 (COMPAT_CHECKSUM) and v2/v3 checksums are set");
  if (s.Csum() && checksum_type != kChecksumTypeCrc32c)
    return Bad(j, "unknown checksum type " + std::to_string(checksum_type));
  return Status::Ok();
}

// Geometry: the log must fit in the source and hold at least one block past s_first.
Status CheckGeometry(const ByteSource& j, JournalSuper& s, uint32_t sb_fc_blocks) {
  if (s.maxlen < 2) return Bad(j, "s_maxlen " + std::to_string(s.maxlen) + " is too small");
  uint64_t bytes = uint64_t{s.maxlen} * s.block_size;
  if (bytes > j.size())
    return Bad(j, "truncated: the superblock says " + std::to_string(s.maxlen) + " blocks (" +
                      std::to_string(bytes) + " bytes), the source holds " +
                      std::to_string(j.size()) + " bytes");
  if (s.first == 0 || s.first >= s.maxlen)
    return Bad(j, "s_first " + std::to_string(s.first) + " is outside the journal (" +
                      std::to_string(s.maxlen) + " blocks)");
  s.last = s.maxlen;
  if (s.incompat & kIncompatFastCommit) {
    s.fc_blocks = sb_fc_blocks ? sb_fc_blocks : kDefaultFastCommitBlocks;
    if (s.fc_blocks >= s.maxlen - s.first)
      return Bad(j, "fast-commit area of " + std::to_string(s.fc_blocks) +
                        " blocks leaves no log in " + std::to_string(s.maxlen) + " blocks");
    s.last = s.maxlen - s.fc_blocks;
  }
  if (s.start != 0 && (s.start < s.first || s.start >= s.last))
    return Bad(j, "s_start " + std::to_string(s.start) + " is outside the log [" +
                      std::to_string(s.first) + ", " + std::to_string(s.last) + ")");
  return Status::Ok();
}

Status CheckSuperChecksum(const ByteSource& j, std::span<const uint8_t> sb) {
  std::array<uint8_t, kSuperSize> copy;
  std::memcpy(copy.data(), sb.data(), kSuperSize);
  PutBe32(copy, kSbChecksum, 0);
  uint32_t want = Be32(sb, kSbChecksum), got = Crc32c(~0u, copy);
  if (want != got)
    return Bad(
        j, "superblock checksum " + Hex(want) + " does not match its contents (" + Hex(got) + ")");
  return Status::Ok();
}

bool ValidBlockSize(uint32_t bs) { return bs >= 1024 && bs <= 65536 && (bs & (bs - 1)) == 0; }

Result<JournalSuper> ReadSuper(const ByteSource& j, uint32_t fs_block_size) {
  if (!ValidBlockSize(fs_block_size))
    return Status::InvalidArgument("journal " + j.name() + ": filesystem block size " +
                                   std::to_string(fs_block_size) + " is not a power of two in " +
                                   "[1024, 65536]");
  if (j.size() < kSuperSize)
    return Bad(j, "truncated: " + std::to_string(j.size()) +
                      " bytes cannot hold the journal superblock (1024)");
  std::array<uint8_t, kSuperSize> sb;
  BFS_RETURN_IF_ERROR(j.ReadAt(0, sb));
  uint32_t type = Be32(sb, kHeaderType);
  if (Be32(sb, kHeaderMagic) != kMagic || (type != kSuperblockV1 && type != kSuperblockV2))
    return Bad(j, "no jbd2 superblock at offset 0 (magic " + Hex(Be32(sb, kHeaderMagic)) +
                      ", type " + std::to_string(type) + ")");
  JournalSuper s;
  s.block_size = Be32(sb, kSbBlockSize);
  if (s.block_size != fs_block_size)
    return Bad(j, "s_blocksize " + std::to_string(s.block_size) +
                      " differs from the filesystem's block size " + std::to_string(fs_block_size));
  s.maxlen = Be32(sb, kSbMaxLen);
  s.first = Be32(sb, kSbFirst);
  s.sequence = Be32(sb, kSbSequence);
  s.start = Be32(sb, kSbStart);
  if (type == kSuperblockV2) {  // v1 has no feature fields: they count as zero
    s.compat = Be32(sb, kSbFeatureCompat);
    s.incompat = Be32(sb, kSbFeatureIncompat);
    BFS_RETURN_IF_ERROR(CheckFeatures(j, s, sb[kSbChecksumType]));
    if (s.Csum()) BFS_RETURN_IF_ERROR(CheckSuperChecksum(j, sb));
  }
  BFS_RETURN_IF_ERROR(CheckGeometry(j, s, Be32(sb, kSbNumFcBlocks)));
  s.csum_seed = Crc32c(~0u, std::span<const uint8_t>(sb).subspan(kSbUuid, kUuidSize));
  s.tag_bytes = TagBytes(s.incompat);
  return s;
}

// The three passes of recovery.c folded into one walk of the log (Scan) and one over what it
// found (Replay). Every log block is read at most once per walk, and the walk never covers more
// than the log's length, so a log that loops onto itself ends instead of spinning.
class Recovery {
 public:
  Recovery(const ByteSource& journal, const JournalSuper& super)
      : j_(journal), s_(super), block_(super.block_size) {}

  Status Scan();
  Status CollectRevokes();
  Status Replay();
  void NoteFastCommitArea();
  JournalReplay TakeResult() { return std::move(out_); }

 private:
  Status ReadLogBlock(uint32_t log_block, std::vector<uint8_t>& into) const {
    return j_.ReadAt(uint64_t{log_block} * s_.block_size, into);
  }
  std::string Where(uint32_t log_block) const {
    return "journal block " + std::to_string(log_block) + " (transaction " +
           std::to_string(next_tid_) + ")";
  }
  bool TailOk(std::span<const uint8_t> b) const;
  bool CommitOk(std::span<const uint8_t> b) const;
  bool DataOk(const Tag& tag, uint32_t tid, std::span<const uint8_t> data) const;
  void Advance() {
    pos_ = s_.Next(pos_);
    ++walked_;
  }
  // The walk has covered as many blocks as the log holds: the log loops onto itself.
  bool Exhausted(uint32_t log_block);
  bool TakeTags(uint32_t log_block);
  enum class Step { kContinue, kEnd };
  Result<Step> OnCommit(uint32_t log_block);
  bool Revoked(uint64_t fs_block, uint32_t tid) const;

  const ByteSource& j_;
  const JournalSuper& s_;
  std::vector<uint8_t> block_;
  uint32_t pos_ = 0, walked_ = 0, next_tid_ = 0;
  bool need_check_commit_time_ = false;  // a descriptor or revoke block failed its checksum
  uint64_t last_commit_time_ = 0;
  Transaction current_;
  std::vector<Transaction> committed_;
  std::unordered_map<uint64_t, uint32_t> revoked_;  // fs block -> latest revoking tid
  JournalReplay out_;
};

bool Recovery::TailOk(std::span<const uint8_t> b) const {
  if (!s_.Csum()) return true;
  size_t tail = b.size() - kTailSize;
  uint32_t crc = Crc32c(s_.csum_seed, b.first(tail));
  const uint8_t zero[kTailSize] = {};
  crc = Crc32c(crc, zero);
  return crc == Be32(b, tail);
}

bool Recovery::CommitOk(std::span<const uint8_t> b) const {
  if (!s_.Csum()) return true;
  uint32_t crc = Crc32c(s_.csum_seed, b.first(kCommitChecksum));
  const uint8_t zero[4] = {};
  crc = Crc32c(crc, zero);
  crc = Crc32c(crc, b.subspan(kCommitChecksum + 4));
  return crc == Be32(b, kCommitChecksum);
}

bool Recovery::DataOk(const Tag& tag, uint32_t tid, std::span<const uint8_t> data) const {
  if (!s_.Csum()) return true;
  uint8_t seq[4];
  PutBe32(seq, 0, tid);
  uint32_t crc = Crc32c(Crc32c(s_.csum_seed, seq), data);
  return s_.Csum3() ? tag.checksum == crc : tag.checksum == (crc & 0xffff);
}

bool Recovery::Exhausted(uint32_t log_block) {
  if (walked_ < s_.LogBlocks()) return false;
  out_.notes.push_back("journal " + j_.name() + ": the log runs longer than the journal at " +
                       Where(log_block) + " (it loops onto itself); it ends there");
  return true;
}

// A descriptor's tags, each naming the next log block; false when the walk runs out of log.
bool Recovery::TakeTags(uint32_t log_block) {
  std::span<const uint8_t> b = block_;
  size_t end = b.size() - (s_.Csum() ? kTailSize : 0);
  for (size_t off = kHeaderSize; off + s_.tag_bytes <= end;) {
    Tag tag;
    tag.flags = Be16(b, off + kTagFlags16);
    tag.fs_block = Be32(b, off + kTagBlockNr);
    if (s_.Is64()) tag.fs_block |= uint64_t{Be32(b, off + kTagBlockNrHigh)} << 32;
    tag.checksum = s_.Csum3() ? Be32(b, off + kTag3Checksum) : Be16(b, off + kTagChecksum16);
    if (Exhausted(log_block)) return false;
    tag.log_block = pos_;
    current_.tags.push_back(tag);
    Advance();
    off += s_.tag_bytes + ((tag.flags & kFlagSameUuid) ? 0 : kUuidSize);
    if (tag.flags & kFlagLastTag) break;
  }
  return true;
}

// recovery.c's commit-block rules: a checksum failure in the transaction's descriptor or revoke
// blocks fails recovery unless the commit is older than the previous one (stale blocks from an
// earlier pass over the log: the log ends); a bad commit checksum ends the log before this
// transaction, with or without async commit (async only lets the kernel scan on for fast
// commits, it replays nothing past the failed commit either).
Result<Recovery::Step> Recovery::OnCommit(uint32_t log_block) {
  uint64_t commit_time = Be64(block_, kCommitSec);
  if (need_check_commit_time_) {
    if (commit_time >= last_commit_time_)
      return Bad(j_, "a descriptor or revoke block of transaction " + std::to_string(next_tid_) +
                         " fails its checksum, and its commit at " + Where(log_block) +
                         " is not older than the last one: the kernel refuses to recover");
    return Step::kEnd;
  }
  if (!CommitOk(block_)) {
    if (commit_time >= last_commit_time_)
      out_.notes.push_back("journal " + j_.name() + ": the commit block at " + Where(log_block) +
                           " fails its checksum; the log ends before that transaction");
    return Step::kEnd;
  }
  last_commit_time_ = commit_time;
  committed_.push_back(std::move(current_));
  current_ = Transaction{};
  current_.tid = ++next_tid_;
  return Step::kContinue;
}

Status Recovery::Scan() {
  pos_ = s_.start;
  next_tid_ = current_.tid = s_.sequence;
  for (;;) {
    uint32_t here = pos_;
    if (Exhausted(here)) return Status::Ok();
    BFS_RETURN_IF_ERROR(ReadLogBlock(here, block_));
    if (Be32(block_, kHeaderMagic) != kMagic || Be32(block_, kHeaderSequence) != next_tid_)
      return Status::Ok();
    Advance();
    switch (Be32(block_, kHeaderType)) {
      case kDescriptor:
        if (!TailOk(block_)) need_check_commit_time_ = true;
        if (!TakeTags(here)) return Status::Ok();
        break;
      case kRevoke:
        if (!TailOk(block_)) need_check_commit_time_ = true;
        current_.revoke_blocks.push_back(here);
        break;
      case kCommit: {
        BFS_ASSIGN_OR_RETURN(Step step, OnCommit(here));
        if (step == Step::kEnd) return Status::Ok();
        break;
      }
      default:  // an unknown block type ends the log, as in recovery.c
        return Status::Ok();
    }
  }
}

// Revoke records of committed transactions, kept only for blocks some transaction journals
// (the others cannot matter), so the table is no larger than the set of journalled blocks.
Status Recovery::CollectRevokes() {
  std::unordered_set<uint64_t> journalled;
  for (const Transaction& t : committed_)
    for (const Tag& tag : t.tags) journalled.insert(tag.fs_block);
  const size_t record = s_.Is64() ? 8 : 4;
  const size_t limit = block_.size() - (s_.Csum() ? kTailSize : 0);
  for (const Transaction& t : committed_) {
    for (uint32_t log_block : t.revoke_blocks) {
      BFS_RETURN_IF_ERROR(ReadLogBlock(log_block, block_));
      uint32_t count = Be32(block_, kRevokeCount);
      if (count > limit)
        return Bad(j_, "revoke block at journal block " + std::to_string(log_block) +
                           " (transaction " + std::to_string(t.tid) + ") claims " +
                           std::to_string(count) + " bytes of a " + std::to_string(block_.size()) +
                           "-byte block");
      for (size_t off = kRevokeHeaderSize; off + record <= count; off += record) {
        uint64_t fs_block = record == 8 ? Be64(block_, off) : Be32(block_, off);
        if (!journalled.contains(fs_block)) continue;
        auto [it, inserted] = revoked_.try_emplace(fs_block, t.tid);
        if (!inserted && TidGt(t.tid, it->second)) it->second = t.tid;
      }
    }
  }
  return Status::Ok();
}

// jbd2_journal_test_revoke: a revoke in this transaction or a later one cancels the block.
bool Recovery::Revoked(uint64_t fs_block, uint32_t tid) const {
  auto it = revoked_.find(fs_block);
  return it != revoked_.end() && !TidGt(tid, it->second);
}

Status Recovery::Replay() {
  std::vector<uint64_t> bad_checksums;
  for (const Transaction& t : committed_) {
    for (const Tag& tag : t.tags) {
      if (Revoked(tag.fs_block, t.tid)) continue;
      BFS_RETURN_IF_ERROR(ReadLogBlock(tag.log_block, block_));
      if (!DataOk(tag, t.tid, block_)) {  // the kernel skips the block and goes on
        bad_checksums.push_back(tag.fs_block);
        continue;
      }
      if (tag.flags & kFlagEscape) PutBe32(block_, 0, kMagic);
      out_.blocks[tag.fs_block] = block_;
    }
  }
  out_.transactions = static_cast<uint32_t>(committed_.size());
  if (!bad_checksums.empty()) {
    std::string list;
    for (size_t i = 0; i < bad_checksums.size() && i < 8; ++i)
      list += (i ? ", " : "") + std::to_string(bad_checksums[i]);
    out_.notes.push_back("journal " + j_.name() + ": " + std::to_string(bad_checksums.size()) +
                         " journalled block(s) fail their checksum and were not replayed " +
                         "(filesystem blocks " + list + (bad_checksums.size() > 8 ? ", ..." : "") +
                         ")");
  }
  return Status::Ok();
}

// Fast commits are ext4's own records, replayed by ext4 rather than jbd2; we do not replay them.
void Recovery::NoteFastCommitArea() {
  // The kernel's first fast-commit block is one past the log's end (jbd2_fc_get_buf).
  uint32_t first_fc = s_.last + 1;
  if (!(s_.incompat & kIncompatFastCommit) || first_fc >= s_.maxlen) return;
  if (!ReadLogBlock(first_fc, block_).ok()) return;
  bool empty = std::all_of(block_.begin(), block_.end(), [](uint8_t b) { return b == 0; });
  if (!empty)
    out_.notes.push_back("journal " + j_.name() + ": the fast-commit area (journal blocks " +
                         std::to_string(s_.last) + " to " + std::to_string(s_.maxlen - 1) +
                         ") is not empty; fast commits are not replayed, so changes committed "
                         "through them after transaction " +
                         std::to_string(s_.sequence + out_.transactions) + " may be missing");
}

}  // namespace

Result<JournalReplay> ReplayJournal(const ByteSource& journal, uint32_t fs_block_size) {
  BFS_ASSIGN_OR_RETURN(JournalSuper super, ReadSuper(journal, fs_block_size));
  Recovery recovery(journal, super);
  if (super.start != 0) {
    BFS_RETURN_IF_ERROR(recovery.Scan());
    BFS_RETURN_IF_ERROR(recovery.CollectRevokes());
    BFS_RETURN_IF_ERROR(recovery.Replay());
    recovery.NoteFastCommitArea();
  }
  JournalReplay out = recovery.TakeResult();
  if (super.compat & kCompatChecksum)
    out.notes.push_back("journal " + journal.name() +
                        ": v1 transaction checksums (COMPAT_CHECKSUM) are not verified");
  return out;
}

}  // namespace backupfs
