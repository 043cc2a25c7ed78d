#include "guest/jbd2_replay.h"

#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "guest/jbd2_format.h"
#include "guest/test_support.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using guest_test::RunTool;
using guest_test::ScratchDir;

// Unmounts on scope exit, so a failing assertion leaves no mount behind.
class Mount {
 public:
  Mount(const fs::path& image, const fs::path& dir, const std::string& options) : dir_(dir) {
    fs::create_directories(dir);
    ok_ = RunTool({"mount", "-o", "loop," + options, image.string(), dir.string()}) == 0;
  }
  ~Mount() { Unmount(); }
  bool ok() const { return ok_; }
  void Unmount() {
    if (ok_) RunTool({"umount", dir_.string()});
    ok_ = false;
  }

 private:
  fs::path dir_;
  bool ok_ = false;
};

void WriteAll(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

struct FsCloser {
  void operator()(ext2_filsys f) const { ext2fs_close_free(&f); }
};

struct Journal {
  Bytes bytes;
  uint32_t block_size = 0;
  bool needs_recovery = false;
};

// Inode 8 read with libext2fs into memory.
Journal ReadJournal(const fs::path& image) {
  Journal j;
  ext2_filsys raw = nullptr;
  if (ext2fs_open(image.c_str(), 0, 0, 0, unix_io_manager, &raw)) return j;
  std::unique_ptr<struct_ext2_filsys, FsCloser> owner(raw);
  j.block_size = raw->blocksize;
  j.needs_recovery = ext2fs_has_feature_journal_needs_recovery(raw->super);
  ext2_file_t file = nullptr;
  if (ext2fs_file_open(raw, EXT2_JOURNAL_INO, 0, &file)) return j;
  j.bytes.resize(ext2fs_file_get_size(file));
  unsigned int got = 0;
  size_t done = 0;
  while (done < j.bytes.size() &&
         !ext2fs_file_read(file, j.bytes.data() + done, j.bytes.size() - done, &got) && got)
    done += got;
  ext2fs_file_close(file);
  j.bytes.resize(done);
  return j;
}

void ApplyBlocks(const fs::path& image, const JournalReplay& r, uint32_t bs) {
  int fd = open(image.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  for (const auto& [block, data] : r.blocks)
    ASSERT_EQ(pwrite(fd, data.data(), data.size(), static_cast<off_t>(block * bs)),
              static_cast<ssize_t>(data.size()));
  close(fd);
}

Bytes ReadBlock(const fs::path& image, uint64_t block, uint32_t bs) {
  Bytes b(bs);
  int fd = open(image.c_str(), O_RDONLY);
  if (fd < 0 || pread(fd, b.data(), bs, static_cast<off_t>(block * bs)) != bs) b.clear();
  if (fd >= 0) close(fd);
  return b;
}

Result<JournalReplay> Replay(const Bytes& journal, uint32_t bs, const std::string& name = "j") {
  BufferSource src(journal, name);
  return ReplayJournal(src, bs);
}

bool AnyNoteHas(const JournalReplay& r, const std::string& text) {
  return std::any_of(r.notes.begin(), r.notes.end(),
                     [&](const std::string& n) { return n.find(text) != std::string::npos; });
}

// ---- 2. Journals written by debugfs ----

constexpr uint32_t kBs = 4096;
constexpr uint64_t kRevoked = 7000, kRewritten = 7001, kEscaped = 7002;

Bytes Pattern(uint8_t seed) {
  Bytes b(kBs);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(seed + i * 7);
  return b;
}

struct Variant {
  std::string name;
  std::vector<std::string> mkfs;
  std::string open;  // the debugfs journal-open command
  uint32_t want_incompat;
};

class DebugfsJournal : public ::testing::TestWithParam<Variant> {
 protected:
  // Transaction 1 writes the three blocks (the third starts with the jbd2 magic and is escaped),
  // 2 revokes the first two, 3 writes the second again.
  void SetUp() override {
    const Variant& v = GetParam();
    image_ = dir_ / "fs.img";
    std::vector<std::string> mkfs = v.mkfs;
    mkfs.insert(mkfs.end(), {"-q", "-F", "-b", "4096", image_.string(), "32M"});
    ASSERT_EQ(RunTool(mkfs), 0);
    tx1_ = Pattern(1);
    Bytes more = Pattern(2), escaped = Pattern(3);
    jbd2::PutBe32(escaped, 0, jbd2::kMagic);
    tx1_.insert(tx1_.end(), more.begin(), more.end());
    tx1_.insert(tx1_.end(), escaped.begin(), escaped.end());
    tx3_ = Pattern(4);
    WriteAll(dir_ / "tx1", tx1_);
    WriteAll(dir_ / "tx3", tx3_);
    std::ofstream cmds(dir_ / "cmds");
    cmds << v.open << "\n"
         << "jw -b 7000-7002 " << (dir_ / "tx1").string() << "\n"
         << "jw -r 7000,7001\n"
         << "jw -b 7001 " << (dir_ / "tx3").string() << "\n"
         << "jc\n";
    cmds.close();
    ASSERT_EQ(RunTool({"debugfs", "-w", "-f", (dir_ / "cmds").string(), image_.string()}), 0);
    journal_ = ReadJournal(image_);
    ASSERT_TRUE(journal_.needs_recovery);
    ASSERT_EQ(journal_.block_size, kBs);
  }
  Bytes Tx1Block(size_t i) const {
    return Bytes(tx1_.begin() + i * kBs, tx1_.begin() + (i + 1) * kBs);
  }
  // The journal block that holds `contents`, as written (escaped or not).
  size_t FindLogBlock(const Bytes& contents) const {
    for (size_t b = 1; b * kBs < journal_.bytes.size(); ++b)
      if (std::equal(contents.begin(), contents.end(), journal_.bytes.begin() + b * kBs)) return b;
    return 0;
  }

  ScratchDir scratch_;
  const fs::path dir_{scratch_.path()};
  fs::path image_;
  Bytes tx1_, tx3_;
  Journal journal_;
};

TEST_P(DebugfsJournal, SuperblockHasTheVariantsFeatures) {
  EXPECT_EQ(jbd2::Be32(journal_.bytes, jbd2::kSbFeatureIncompat) & ~jbd2::kIncompatRevoke,
            GetParam().want_incompat);
}

TEST_P(DebugfsJournal, RevokedBlockIsNotReplayedRewrittenOneIs) {
  auto r = Replay(journal_.bytes, kBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 3u);
  EXPECT_FALSE(r->blocks.contains(kRevoked));
  ASSERT_TRUE(r->blocks.contains(kRewritten));
  EXPECT_EQ(r->blocks.at(kRewritten), tx3_);
  ASSERT_TRUE(r->blocks.contains(kEscaped));
  EXPECT_EQ(r->blocks.at(kEscaped), Tx1Block(2));  // magic restored
  EXPECT_TRUE(r->notes.empty()) << r->notes.front();
}

TEST_P(DebugfsJournal, AgreesWithE2fsck) {
  auto r = Replay(journal_.bytes, kBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  fs::path ours = dir_ / "ours.img", theirs = dir_ / "theirs.img";
  fs::copy_file(image_, ours);
  fs::copy_file(image_, theirs);
  ApplyBlocks(ours, *r, kBs);
  ASSERT_LE(RunTool({"e2fsck", "-fy", theirs.string()}), 1);
  for (uint64_t b : {kRevoked, kRewritten, kEscaped})
    EXPECT_EQ(ReadBlock(ours, b, kBs), ReadBlock(theirs, b, kBs)) << "block " << b;
}

// The checksum cases, on the layouts that have checksums (all but ext3).
class ChecksummedJournal : public DebugfsJournal {};

TEST_P(ChecksummedJournal, DataBlockWithBadChecksumIsSkippedWithANote) {
  size_t log_block = FindLogBlock(tx3_);
  ASSERT_NE(log_block, 0u);
  Bytes j = journal_.bytes;
  j[log_block * kBs + 100] ^= 0xff;
  auto r = Replay(j, kBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 3u);
  EXPECT_FALSE(r->blocks.contains(kRewritten));  // tx 3's copy fails, tx 1's is revoked
  EXPECT_TRUE(AnyNoteHas(*r, "fail their checksum"));
  EXPECT_TRUE(AnyNoteHas(*r, "7001"));
}

TEST_P(ChecksummedJournal, BadCommitChecksumEndsTheLogBeforeIt) {
  uint32_t last_tid = jbd2::Be32(journal_.bytes, jbd2::kSbSequence) + 2;
  Bytes j = journal_.bytes;
  size_t commit = 0;
  for (size_t b = 1; (b + 1) * kBs <= j.size(); ++b) {
    std::span<const uint8_t> blk(j.data() + b * kBs, kBs);
    if (jbd2::Be32(blk, 0) == jbd2::kMagic && jbd2::Be32(blk, 4) == jbd2::kCommit &&
        jbd2::Be32(blk, 8) == last_tid)
      commit = b;
  }
  ASSERT_NE(commit, 0u);
  j[commit * kBs + 200] ^= 1;
  auto r = Replay(j, kBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 2u);
  EXPECT_FALSE(r->blocks.contains(kRewritten));
  EXPECT_TRUE(r->blocks.contains(kEscaped));
  EXPECT_TRUE(AnyNoteHas(*r, "commit block")) << (r->notes.empty() ? "" : r->notes[0]);
}

TEST_P(DebugfsJournal, TruncatedSourceIsAnErrorNamingIt) {
  Bytes half(journal_.bytes.begin(), journal_.bytes.begin() + journal_.bytes.size() / 2);
  auto r = Replay(half, kBs, "vda1 journal");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vda1 journal"), std::string::npos);
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
}

TEST_P(DebugfsJournal, WrongBlockSizeIsAnError) {
  auto r = Replay(journal_.bytes, 1024);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("s_blocksize 4096"), std::string::npos);
}

const Variant kCsumV3{"ext4_64bit_csum_v3",
                      {"mkfs.ext4", "-O", "64bit,metadata_csum"},
                      "jo -c",
                      jbd2::kIncompat64Bit | jbd2::kIncompatCsumV3};
const Variant kCsumV2{"ext4_64bit_csum_v2",
                      {"mkfs.ext4", "-O", "64bit,metadata_csum"},
                      "jo -c -v 2",
                      jbd2::kIncompat64Bit | jbd2::kIncompatCsumV2};
const Variant k32BitCsumV3{"ext4_32bit_csum_v3",
                           {"mkfs.ext4", "-O", "^64bit,metadata_csum"},
                           "jo -c",
                           jbd2::kIncompatCsumV3};
const Variant kExt3{"ext3", {"mkfs.ext3"}, "jo", 0};
std::string VariantName(const ::testing::TestParamInfo<Variant>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Layouts, DebugfsJournal,
                         ::testing::Values(kCsumV3, kCsumV2, k32BitCsumV3, kExt3), VariantName);
INSTANTIATE_TEST_SUITE_P(Layouts, ChecksummedJournal,
                         ::testing::Values(kCsumV3, kCsumV2, k32BitCsumV3), VariantName);

// ---- 1. A journal written by the kernel, checked against e2fsck's recovery ----

struct Entry {
  fs::file_type type;
  mode_t mode = 0;
  uintmax_t size = 0;
  int64_t mtime_ns = 0;
  std::string contents;  // file bytes or link target
};

std::map<std::string, Entry> Tree(const fs::path& root) {
  std::map<std::string, Entry> tree;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    struct stat st;
    if (lstat(e.path().c_str(), &st) != 0) continue;
    Entry entry{e.symlink_status().type(),
                st.st_mode,
                static_cast<uintmax_t>(st.st_size),
                int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec,
                {}};
    if (e.is_symlink()) {
      entry.contents = fs::read_symlink(e.path()).string();
    } else if (e.is_regular_file()) {
      std::ifstream in(e.path(), std::ios::binary);
      entry.contents.assign(std::istreambuf_iterator<char>(in), {});
    }
    tree[fs::relative(e.path(), root).string()] = entry;
  }
  return tree;
}

void WriteSynced(const fs::path& p, const std::string& text, size_t repeat) {
  int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0640);
  ASSERT_GE(fd, 0) << p;
  for (size_t i = 0; i < repeat; ++i)
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
}

void SyncDir(const fs::path& p) {
  int fd = open(p.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
}

TEST(Jbd2Kernel, ReplayOfAMountedCopyMatchesE2fsck) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to loop-mount";
  ScratchDir scratch;
  const fs::path dir = scratch.path();
  fs::path image = dir / "live.img", crashed = dir / "crashed.img";
  ASSERT_EQ(RunTool({"mkfs.ext4", "-q", "-F", image.string(), "64M"}), 0);
  {
    // A long commit interval: only our syncs commit, and nothing checkpoints before the copy.
    Mount live(image, dir / "live", "commit=300");
    ASSERT_TRUE(live.ok());
    fs::path root = dir / "live";
    fs::create_directories(root / "docs" / "old");
    ASSERT_NO_FATAL_FAILURE(WriteSynced(root / "docs" / "a.txt", "alpha\n", 1000));
    ASSERT_NO_FATAL_FAILURE(WriteSynced(root / "docs" / "b.bin", std::string(4096, 'b'), 300));
    ASSERT_NO_FATAL_FAILURE(WriteSynced(root / "docs" / "old" / "gone", "gone", 10));
    ASSERT_NO_FATAL_FAILURE(WriteSynced(root / "tmp", "renamed", 5));
    fs::rename(root / "tmp", root / "docs" / "renamed.txt");
    fs::remove(root / "docs" / "old" / "gone");
    fs::create_symlink("a.txt", root / "docs" / "link");
    chmod((root / "docs" / "b.bin").c_str(), 0600);
    ASSERT_NO_FATAL_FAILURE(SyncDir(root / "docs" / "old"));
    ASSERT_NO_FATAL_FAILURE(SyncDir(root / "docs"));
    ASSERT_NO_FATAL_FAILURE(SyncDir(root));
    // fsync commits to the journal; a global sync() would also write the metadata home.
    fs::copy_file(image, crashed);  // while mounted: what a crash at this point leaves
  }
  Journal journal = ReadJournal(crashed);
  ASSERT_TRUE(journal.needs_recovery);
  ASSERT_NE(jbd2::Be32(journal.bytes, jbd2::kSbStart), 0u) << "the journal was clean";
  auto r = Replay(journal.bytes, journal.block_size, "crashed.img journal");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->transactions, 0u);
  EXPECT_FALSE(r->blocks.empty());
  std::cout << "kernel journal: " << r->transactions << " transactions, " << r->blocks.size()
            << " blocks\n";
  for (const std::string& note : r->notes) ADD_FAILURE() << note;

  fs::path ours = dir / "ours.img", theirs = dir / "theirs.img";
  fs::copy_file(crashed, ours);
  fs::copy_file(crashed, theirs);
  ASSERT_NO_FATAL_FAILURE(ApplyBlocks(ours, *r, journal.block_size));
  ASSERT_LE(RunTool({"e2fsck", "-fy", theirs.string()}), 1);
  Mount ours_mount(ours, dir / "ours", "ro,noload");
  Mount theirs_mount(theirs, dir / "theirs", "ro");
  ASSERT_TRUE(ours_mount.ok());
  ASSERT_TRUE(theirs_mount.ok());
  auto want = Tree(dir / "theirs"), got = Tree(dir / "ours");
  {  // Without the replay the image lacks what was synced: the test compares something.
    Mount raw_mount(crashed, dir / "raw", "ro,noload");
    ASSERT_TRUE(raw_mount.ok());
    EXPECT_FALSE(fs::exists(dir / "raw" / "docs" / "renamed.txt"));
  }
  ASSERT_TRUE(want.contains("docs/renamed.txt"));
  ASSERT_FALSE(want.contains("docs/old/gone"));
  ASSERT_EQ(want.size(), got.size());
  for (const auto& [path, w] : want) {
    ASSERT_TRUE(got.contains(path)) << path;
    const Entry& g = got.at(path);
    EXPECT_EQ(g.type, w.type) << path;
    EXPECT_EQ(g.mode, w.mode) << path;
    EXPECT_EQ(g.size, w.size) << path;
    EXPECT_EQ(g.mtime_ns, w.mtime_ns) << path;
    EXPECT_TRUE(g.contents == w.contents) << path;
  }
}

// ---- 3. Hostile journals, built by hand (no checksums) ----

constexpr uint32_t kSmallBs = 1024, kSmallLen = 64, kSeq = 5;

Bytes HandJournal() {
  Bytes j(kSmallLen * kSmallBs);
  jbd2::PutBe32(j, 0, jbd2::kMagic);
  jbd2::PutBe32(j, 4, jbd2::kSuperblockV2);
  jbd2::PutBe32(j, jbd2::kSbBlockSize, kSmallBs);
  jbd2::PutBe32(j, jbd2::kSbMaxLen, kSmallLen);
  jbd2::PutBe32(j, jbd2::kSbFirst, 1);
  jbd2::PutBe32(j, jbd2::kSbSequence, kSeq);
  jbd2::PutBe32(j, jbd2::kSbStart, 1);
  return j;
}

std::span<uint8_t> LogBlock(Bytes& j, size_t b, uint32_t type, uint32_t seq) {
  std::span<uint8_t> blk(j.data() + b * kSmallBs, kSmallBs);
  jbd2::PutBe32(blk, 0, jbd2::kMagic);
  jbd2::PutBe32(blk, 4, type);
  jbd2::PutBe32(blk, 8, seq);
  return blk;
}

TEST(Jbd2Hostile, HandJournalWithOneTransactionReplays) {
  Bytes j = HandJournal();
  auto d = LogBlock(j, 1, jbd2::kDescriptor, kSeq);
  jbd2::PutBe32(d, 12, 4242);
  jbd2::PutBe32(d, 12 + 4, jbd2::kFlagLastTag);  // checksum 0, flags LAST_TAG (UUID follows)
  std::fill_n(j.begin() + 2 * kSmallBs, kSmallBs, 0xab);
  LogBlock(j, 3, jbd2::kCommit, kSeq);
  auto r = Replay(j, kSmallBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 1u);
  ASSERT_EQ(r->blocks.size(), 1u);
  EXPECT_EQ(r->blocks.at(4242), Bytes(kSmallBs, 0xab));
}

TEST(Jbd2Hostile, CleanJournalReplaysNothing) {
  Bytes j = HandJournal();
  jbd2::PutBe32(j, jbd2::kSbStart, 0);
  LogBlock(j, 1, jbd2::kCommit, kSeq);
  auto r = Replay(j, kSmallBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 0u);
  EXPECT_TRUE(r->blocks.empty());
}

TEST(Jbd2Hostile, AbsurdSuperblocksAreErrors) {
  struct Case {
    size_t field;
    uint32_t value;
    std::string want;
  };
  for (const Case& c :
       {Case{jbd2::kSbMaxLen, 0xffffffff, "truncated"}, Case{jbd2::kSbMaxLen, 1, "s_maxlen 1"},
        Case{jbd2::kSbFirst, 0, "s_first 0"},
        Case{jbd2::kSbFirst, 0xfffffff0, "s_first 4294967280"},
        Case{jbd2::kSbStart, 64, "s_start 64"},
        Case{jbd2::kSbBlockSize, 0x40000000, "s_blocksize 1073741824"},
        Case{jbd2::kSbFeatureIncompat, 0x80,
             "unknown incompatible journal "
             "features 0x80"},
        Case{jbd2::kSbFeatureIncompat, 0x18, "both CSUM_V2 and CSUM_V3"},
        Case{0, 0x12345678, "no jbd2 superblock"}}) {
    Bytes j = HandJournal();
    jbd2::PutBe32(j, c.field, c.value);
    auto r = Replay(j, kSmallBs, "hand");
    ASSERT_FALSE(r.ok()) << c.want;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("journal hand"), std::string::npos);
  }
}

TEST(Jbd2Hostile, TinySourceIsAnError) {
  auto r = Replay(Bytes(100), kSmallBs, "tiny");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
}

TEST(Jbd2Hostile, DescriptorClaimingMoreTagsThanTheLogEndsWithANote) {
  Bytes j = HandJournal();
  auto d = LogBlock(j, 1, jbd2::kDescriptor, kSeq);
  // 126 same-UUID tags, none the last, over a 63-block log.
  for (size_t off = 12; off + 8 <= kSmallBs; off += 8) {
    jbd2::PutBe32(d, off, static_cast<uint32_t>(off));
    jbd2::PutBe32(d, off + 4, jbd2::kFlagSameUuid);
  }
  auto r = Replay(j, kSmallBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 0u);
  EXPECT_TRUE(r->blocks.empty());
  EXPECT_TRUE(AnyNoteHas(*r, "loops onto itself"));
}

TEST(Jbd2Hostile, LogThatLoopsEndsWithANote) {
  Bytes j = HandJournal();
  for (size_t b = 1; b < kSmallLen; ++b) LogBlock(j, b, jbd2::kRevoke, kSeq);
  jbd2::PutBe32(j, jbd2::kSbStart, 30);
  auto r = Replay(j, kSmallBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 0u);
  EXPECT_TRUE(AnyNoteHas(*r, "loops onto itself"));
}

TEST(Jbd2Hostile, RevokeCountPastTheBlockIsAnError) {
  Bytes j = HandJournal();
  auto rv = LogBlock(j, 1, jbd2::kRevoke, kSeq);
  jbd2::PutBe32(rv, jbd2::kRevokeCount, 0x7fffffff);
  LogBlock(j, 2, jbd2::kCommit, kSeq);
  auto r = Replay(j, kSmallBs);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("revoke block at journal block 1"), std::string::npos)
      << r.status().message();
}

TEST(Jbd2Hostile, FastCommitAreaWithDataGetsANote) {
  Bytes j = HandJournal();
  jbd2::PutBe32(j, jbd2::kSbFeatureIncompat, jbd2::kIncompatFastCommit);
  jbd2::PutBe32(j, jbd2::kSbNumFcBlocks, 8);  // log [1, 56), fast commits from 57
  LogBlock(j, 1, jbd2::kCommit, kSeq);
  j[57 * kSmallBs] = 9;
  auto r = Replay(j, kSmallBs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->transactions, 1u);
  EXPECT_TRUE(AnyNoteHas(*r, "fast commits are not replayed"));
}

}  // namespace
}  // namespace backupfs
