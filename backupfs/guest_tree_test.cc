// The guest side of a restore point without FUSE: <disk>.parts and <disk>.files worked out from
// a saveset whose disk holds an MBR and an ext2 filesystem (made by the real mkfs.ext2 -d), their
// nodes, derived inode numbers shared by hard links, and errors that name what failed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "backupfs/tree.h"
#include "guest/test_support.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using guest_test::RunTool;
using testing::ReadFileBytes;
using testing::ScratchDir;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kDiskSize = 16 * kMiB;
constexpr uint64_t kPartStart = kMiB;  // partition 1: sectors 2048 .. 30719

// A 16 MiB disk: an MBR with one Linux partition from 1 MiB to the end, holding an ext2
// filesystem with a file, a hard link to it, a directory and a symlink.
std::vector<uint8_t> MakeDisk(const std::string& scratch) {
  const std::string tree = scratch + "/tree", fs = scratch + "/fs.img";
  std::filesystem::create_directories(tree + "/etc");
  std::ofstream(tree + "/etc/hostname") << "guest\n";
  std::filesystem::create_hard_link(tree + "/etc/hostname", tree + "/etc/hostname.bak");
  std::filesystem::create_symlink("/etc/hostname", tree + "/link");
  EXPECT_EQ(RunTool({"mkfs.ext2", "-q", "-F", "-L", "root", "-d", tree, fs,
                     std::to_string((kDiskSize - kPartStart) / 1024)}),
            0);
  std::vector<uint8_t> disk(kDiskSize);
  const std::vector<uint8_t> bytes = ReadFileBytes(fs);
  std::copy(bytes.begin(), bytes.end(), disk.begin() + kPartStart);
  uint8_t* entry = &disk[446];
  entry[4] = 0x83;
  const uint32_t first = kPartStart / 512, count = (kDiskSize - kPartStart) / 512;
  for (int i = 0; i < 4; ++i) {
    entry[8 + i] = static_cast<uint8_t>(first >> (8 * i));
    entry[12 + i] = static_cast<uint8_t>(count >> (8 * i));
  }
  disk[510] = 0x55;
  disk[511] = 0xaa;
  return disk;
}

void WriteFull(const std::string& dir, const std::vector<uint8_t>& disk) {
  StreamMetadata m;
  m.disk_name = "vda";
  m.checkpoint_name = "virtnbdbackup.0";
  m.date = "2026-01-01T10:00:00";
  m.virtual_size = disk.size();
  m.data_size = disk.size();
  m.disk_format = "raw";
  WriterOptions options;
  options.durable = false;
  auto w = StreamWriter::Create(dir + "/vda.full.data", m, options);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->AddData(0, disk).ok());
  ASSERT_TRUE((*w)->Finish().ok());
}

std::vector<std::string> Names(const std::vector<LiveTree::Entry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.name);
  return out;
}

class GuestTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ScratchDir scratch;
    disk_ = MakeDisk(scratch.path());
    WriteFull(dir_.path(), disk_);
    LiveTree::Options o;
    o.report = [this](const std::string& m) { reports_.push_back(m); };
    tree_ = std::make_unique<LiveTree>(dir_.path(), o);
    point_ = tree_->Lookup(1, "virtnbdbackup.0");
    ASSERT_TRUE(point_);
  }
  std::shared_ptr<const Node> Look(const std::shared_ptr<const Node>& dir,
                                   const std::string& name) {
    Status error;
    auto n = tree_->Lookup(dir->ino, name, &error);
    EXPECT_TRUE(error.ok()) << error.ToString();
    return n;
  }

  ScratchDir dir_;
  std::vector<uint8_t> disk_;
  std::vector<std::string> reports_;
  std::unique_ptr<LiveTree> tree_;
  std::shared_ptr<const Node> point_;
};

TEST_F(GuestTreeTest, PartitionsAreFilesWithBlkidsView) {
  EXPECT_EQ(Names(tree_->List(*point_)),
            (std::vector<std::string>{".", "..", "vda.files", "vda.parts", "vda.raw"}));
  auto parts = Look(point_, "vda.parts");
  ASSERT_TRUE(parts);
  EXPECT_EQ(Names(tree_->List(*parts)), (std::vector<std::string>{".", "..", "1", "blkid"}));
  auto part = Look(parts, "1");
  ASSERT_TRUE(part);
  EXPECT_EQ(part->kind, NodeKind::kPartition);
  EXPECT_EQ(part->size, kDiskSize - kPartStart);
  EXPECT_EQ(part->xattrs.at("user.blkid.TYPE"), "ext2");
  EXPECT_EQ(part->xattrs.at("user.blkid.LABEL"), "root");
  EXPECT_EQ(part->xattrs.at("user.blkid.PART_ENTRY_TYPE"), "0x83");
  // Its bytes are the disk's from the partition's start: the ext2 superblock at 1024.
  std::vector<uint8_t> head(2048);
  ASSERT_TRUE(part->bytes->ReadAt(0, head).ok());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), disk_.begin() + kPartStart));
  EXPECT_FALSE(part->bytes->ReadAt(part->size - 1, head).ok());  // past its end
  auto listing = Look(parts, "blkid");
  ASSERT_TRUE(listing);
  EXPECT_NE(listing->text.find("1: START=1048576 SIZE=15728640 TYPE=\"ext2\""), std::string::npos)
      << listing->text;
  EXPECT_EQ(Look(parts, "2"), nullptr);
}

TEST_F(GuestTreeTest, FilesShowTheGuestTreeWithDerivedInodeNumbers) {
  auto files = Look(point_, "vda.files");
  ASSERT_TRUE(files);
  EXPECT_EQ(Names(tree_->List(*files)), (std::vector<std::string>{".", "..", "1"}));
  auto root = Look(files, "1");
  ASSERT_TRUE(root && root->guest);
  EXPECT_EQ(root->kind, NodeKind::kDir);
  EXPECT_EQ(root->parent, files->ino);
  EXPECT_TRUE(S_ISDIR(root->guest->attr.mode));
  auto etc = Look(root, "etc");
  ASSERT_TRUE(etc);
  auto file = Look(etc, "hostname"), link = Look(etc, "hostname.bak");
  ASSERT_TRUE(file && link);
  // Hard links: one inode number, derived (top bit set), with the guest's link count.
  EXPECT_EQ(file->ino, link->ino);
  EXPECT_NE(file->ino & (uint64_t{1} << 63), 0u);
  EXPECT_EQ(file->guest->attr.nlink, 2u);
  EXPECT_EQ(file->kind, NodeKind::kGuest);
  EXPECT_EQ(file->size, 6u);
  auto symlink = Look(root, "link");
  ASSERT_TRUE(symlink);
  EXPECT_EQ(symlink->kind, NodeKind::kSymlink);
  EXPECT_EQ(symlink->target, "/etc/hostname");  // as stored, never followed
  EXPECT_EQ(Look(etc, "missing"), nullptr);
  // Looking the same directory up again gives the same number: the kernel sees one inode.
  EXPECT_EQ(Look(files, "1")->ino, root->ino);
  EXPECT_TRUE(reports_.empty()) << reports_.front();
}

}  // namespace
}  // namespace backupfs
