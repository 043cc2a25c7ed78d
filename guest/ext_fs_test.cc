// OpenExtFs against the kernel: images built with mkfs.ext4/mkfs.ext2 -d from a temp tree, then
// every path compared with what a read-only loop mount shows (needs root), plus hostile images.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "guest/ext_io.h"
#include "guest/guest_fs.h"
#include "guest/test_support.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;
using guest_test::RunTool;
using guest_test::RunToolOutput;
using guest_test::ScratchDir;

bool IsRoot() { return geteuid() == 0; }

// A read-only loop mount, unmounted when it goes.
class LoopMount {
 public:
  LoopMount(const fs::path& image, const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir);
    mounted_ = RunTool({"mount", "-o", "loop,ro", image.string(), dir.string()}) == 0;
  }
  ~LoopMount() {
    if (mounted_) RunTool({"umount", "-d", dir_.string()});
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path dir_;
  bool mounted_ = false;
};

std::vector<uint8_t> ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void WriteAt(const fs::path& p, uint64_t offset, const std::string& bytes) {
  int fd = open(p.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, bytes.data(), bytes.size(), offset), static_cast<ssize_t>(bytes.size()));
  close(fd);
}

void SetMtime(const fs::path& p, time_t sec, long nsec) {
  struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << p;
}

// The tree every image is built from.
void BuildTree(const fs::path& root, bool with_special) {
  fs::create_directories(root / "a/b/c");
  WriteAt(root / "a/b/c/deep.txt", 0, "deep down\n");
  std::mt19937_64 rng(42);
  std::string big(5 * 1024 * 1024, '\0');
  for (char& c : big) c = static_cast<char>(rng());
  WriteAt(root / "big.bin", 0, big);
  WriteAt(root / "sparse", 0, "head");
  WriteAt(root / "sparse", 3 * 1024 * 1024 + 100, "middle");
  WriteAt(root / "sparse", 7 * 1024 * 1024, std::string(70000, 'x'));
  ASSERT_EQ(truncate((root / "sparse").c_str(), 10 * 1024 * 1024), 0);
  WriteAt(root / "hard1", 0, "linked");
  fs::create_hard_link(root / "hard1", root / "a/hard2");
  fs::create_symlink("short/target", root / "fast");
  fs::create_symlink(std::string(100, 'L') + "/end", root / "slow");
  WriteAt(root / "small", 0, "tiny file");
  WriteAt(root / "suid", 0, "#!/bin/sh\n");
  ASSERT_EQ(chmod((root / "suid").c_str(), 04755), 0);
  WriteAt(root / "owned", 0, "owned");
  ASSERT_EQ(lchown((root / "owned").c_str(), 1234, 5678), 0);
  WriteAt(root / "owned_high", 0, "high ids");
  ASSERT_EQ(lchown((root / "owned_high").c_str(), 100000, 200000), 0);
  ASSERT_EQ(lchown((root / "fast").c_str(), 77, 88), 0);
  ASSERT_EQ(setxattr((root / "small").c_str(), "user.color", "blue", 4, 0), 0);
  ASSERT_EQ(setxattr((root / "small").c_str(), "user.empty", "", 0, 0), 0);
  ASSERT_EQ(setxattr((root / "a").c_str(), "user.big", std::string(400, 'v').data(), 400, 0), 0);
  if (with_special) {
    ASSERT_EQ(mknod((root / "chr").c_str(), S_IFCHR | 0600, makedev(4, 5)), 0);
    ASSERT_EQ(mknod((root / "blk").c_str(), S_IFBLK | 0660, makedev(259, 70000)), 0);
    ASSERT_EQ(mkfifo((root / "fifo").c_str(), 0640), 0);
  }
  fs::create_directories(root / "many");
  for (int i = 0; i < 3000; ++i) WriteAt(root / "many" / ("f" + std::to_string(i)), 0, "");
  fs::create_directories(root / "empty");
  SetMtime(root / "a/b/c/deep.txt", 1234567890, 123456789);
  SetMtime(root / "big.bin", 1600000000, 999999999);
  SetMtime(root / "fast", 1500000000, 5);
  SetMtime(root / "a", 1400000000, 42);
}

struct Image {
  fs::path path;
  std::shared_ptr<const ByteSource> source;
};

Image MakeImage(const ScratchDir& dir, const std::string& mkfs, std::vector<std::string> options,
                bool with_special) {
  fs::path root = dir.File("root");
  BuildTree(root, with_special);
  fs::path img = dir.File("disk.img");
  std::vector<std::string> argv = {mkfs, "-q", "-F", "-d", root.string()};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back(img.string());
  argv.push_back("64M");
  EXPECT_EQ(RunTool(argv), 0) << mkfs;
  return {img, std::make_shared<BufferSource>(ReadAll(img), "disk.img")};
}

std::string ReadFile(const GuestFile& f) {
  std::string s(f.size(), '\0');
  Status st = f.Read(0, {reinterpret_cast<uint8_t*>(s.data()), s.size()});
  EXPECT_TRUE(st.ok()) << st.ToString();
  return s;
}

std::string KernelFile(const fs::path& p) {
  auto bytes = ReadAll(p);
  return std::string(bytes.begin(), bytes.end());
}

std::map<std::string, std::string> KernelUserXattrs(const fs::path& p) {
  std::map<std::string, std::string> out;
  char names[65536];
  ssize_t n = llistxattr(p.c_str(), names, sizeof(names));
  for (ssize_t i = 0; i < n; i += std::strlen(names + i) + 1) {
    std::string name(names + i);
    if (name.rfind("user.", 0) != 0) continue;
    char value[65536];
    ssize_t len = lgetxattr(p.c_str(), name.c_str(), value, sizeof(value));
    out[name] = std::string(value, len > 0 ? len : 0);
  }
  return out;
}

void CompareSeeks(const GuestFile& f, const fs::path& p) {
  int fd = open(p.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  uint64_t size = f.size();
  int transitions = 0;
  for (uint64_t off = 0; off < size;) {
    off_t data = lseek(fd, off, SEEK_DATA);
    uint64_t kdata = data < 0 ? size : data;
    ASSERT_EQ(f.NextData(off), kdata) << p << " SEEK_DATA from " << off;
    if (kdata >= size) break;
    off_t hole = lseek(fd, kdata, SEEK_HOLE);
    ASSERT_EQ(f.NextHole(kdata), static_cast<uint64_t>(hole)) << p << " SEEK_HOLE from " << kdata;
    off = hole;
    ++transitions;
  }
  close(fd);
  EXPECT_GE(transitions, 1);
}

// Walks the GuestFs tree and compares every path with the kernel's mount.
void CompareWithKernel(GuestFs& gfs, const fs::path& mnt, uint64_t ino, const std::string& rel,
                       int& files) {
  auto entries = gfs.ReadDir(ino);
  ASSERT_TRUE(entries.ok()) << rel << ": " << entries.status().ToString();
  std::set<std::string> ours, kernels;
  for (const auto& e : *entries) ours.insert(e.name);
  for (const auto& k : fs::directory_iterator(mnt / rel)) kernels.insert(k.path().filename());
  EXPECT_EQ(ours, kernels) << rel;
  for (const GuestDirEntry& e : *entries) {
    std::string path = rel.empty() ? e.name : rel + "/" + e.name;
    fs::path kpath = mnt / path;
    struct stat st;
    ASSERT_EQ(lstat(kpath.c_str(), &st), 0) << path;
    auto a = gfs.Stat(e.ino);
    ASSERT_TRUE(a.ok()) << path << ": " << a.status().ToString();
    EXPECT_EQ(a->ino, st.st_ino) << path;
    EXPECT_EQ(a->mode, st.st_mode) << path;
    EXPECT_EQ(a->uid, st.st_uid) << path;
    EXPECT_EQ(a->gid, st.st_gid) << path;
    EXPECT_EQ(a->nlink, st.st_nlink) << path;
    EXPECT_EQ(a->size, static_cast<uint64_t>(st.st_size)) << path;
    EXPECT_EQ(a->blocks, static_cast<uint64_t>(st.st_blocks)) << path;
    EXPECT_EQ(a->rdev, st.st_rdev) << path;
    EXPECT_EQ(a->mtime.tv_sec, st.st_mtim.tv_sec) << path;
    EXPECT_EQ(a->mtime.tv_nsec, st.st_mtim.tv_nsec) << path;
    EXPECT_EQ(a->atime.tv_sec, st.st_atim.tv_sec) << path;
    EXPECT_EQ(a->atime.tv_nsec, st.st_atim.tv_nsec) << path;
    EXPECT_EQ(a->ctime.tv_sec, st.st_ctim.tv_sec) << path;
    EXPECT_EQ(a->ctime.tv_nsec, st.st_ctim.tv_nsec) << path;
    if (e.type != 0) {
      EXPECT_EQ(e.type, st.st_mode & S_IFMT) << path;
    }
    auto xattrs = gfs.Xattrs(e.ino);
    ASSERT_TRUE(xattrs.ok()) << path << ": " << xattrs.status().ToString();
    std::map<std::string, std::string> user;
    for (const auto& [k, v] : *xattrs) {
      if (k.rfind("user.", 0) == 0) user[k] = v;
    }
    EXPECT_EQ(user, KernelUserXattrs(kpath)) << path;
    if (S_ISDIR(st.st_mode)) {
      CompareWithKernel(gfs, mnt, e.ino, path, files);
    } else if (S_ISLNK(st.st_mode)) {
      auto target = gfs.ReadLink(e.ino);
      ASSERT_TRUE(target.ok()) << path << ": " << target.status().ToString();
      EXPECT_EQ(*target, fs::read_symlink(kpath).string()) << path;
    } else if (S_ISREG(st.st_mode)) {
      auto file = gfs.Open(e.ino);
      ASSERT_TRUE(file.ok()) << path << ": " << file.status().ToString();
      EXPECT_EQ(ReadFile(**file), KernelFile(kpath)) << path;
      if (e.name == "sparse") CompareSeeks(**file, kpath);
      ++files;
    } else {
      auto file = gfs.Open(e.ino);
      ASSERT_FALSE(file.ok()) << path;
      EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument) << path;
    }
  }
}

void CheckAgainstKernel(const std::string& mkfs, std::vector<std::string> options) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to build the tree and loop-mount the image";
  ScratchDir dir;
  Image image = MakeImage(dir, mkfs, std::move(options), true);
  auto gfs = OpenExtFs(image.source);
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  LoopMount mount(image.path, dir.File("mnt"));
  ASSERT_TRUE(mount.mounted());
  int files = 0;
  CompareWithKernel(**gfs, dir.File("mnt"), (*gfs)->root(), "", files);
  EXPECT_GT(files, 3000);
  EXPECT_TRUE((*gfs)->Notes().empty());
}

TEST(ExtFs, Ext4MatchesTheKernel) { CheckAgainstKernel("mkfs.ext4", {}); }

TEST(ExtFs, Ext2WithOneKiBBlocksMatchesTheKernel) {
  CheckAgainstKernel("mkfs.ext2", {"-b", "1024"});
}

TEST(ExtFs, Ext4InlineDataMatchesTheKernel) {
  CheckAgainstKernel("mkfs.ext4", {"-O", "inline_data", "-b", "1024"});
}

TEST(ExtFs, Ext4SmallInodesMatchTheKernel) { CheckAgainstKernel("mkfs.ext4", {"-I", "128"}); }

// Inode numbers of paths, found through the GuestFs itself.
uint64_t Lookup(GuestFs& gfs, const std::string& path) {
  uint64_t ino = gfs.root();
  for (const auto& part : fs::path(path)) {
    auto entries = gfs.ReadDir(ino);
    if (!entries.ok()) return 0;
    auto it = std::find_if(entries->begin(), entries->end(),
                           [&](const GuestDirEntry& e) { return e.name == part.string(); });
    if (it == entries->end()) return 0;
    ino = it->ino;
  }
  return ino;
}

TEST(ExtFs, ReadsWithoutRootAndKeepsFilesAfterTheFsGoes) {
  ScratchDir dir;
  fs::path root = dir.File("root");
  fs::create_directories(root / "d");
  WriteAt(root / "d/f", 0, "hello, ext");
  fs::create_symlink(std::string(200, 's'), root / "d/slow");
  fs::path img = dir.File("disk.img");
  ASSERT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-d", root.string(), img.string(), "8M"}), 0);
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(ReadAll(img), "small.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  EXPECT_EQ((*gfs)->type(), "ext4");
  uint64_t ino = Lookup(**gfs, "d/f");
  ASSERT_NE(ino, 0u);
  auto link = (*gfs)->ReadLink(Lookup(**gfs, "d/slow"));
  ASSERT_TRUE(link.ok()) << link.status().ToString();
  EXPECT_EQ(*link, std::string(200, 's'));
  auto file = (*gfs)->Open(ino);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto dir_open = (*gfs)->Open(Lookup(**gfs, "d"));
  EXPECT_EQ(dir_open.status().code(), StatusCode::kInvalidArgument);
  auto bad = (*gfs)->Stat(1u << 30);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("small.img inode 1073741824"), std::string::npos)
      << bad.status().message();
  gfs->reset();  // the file keeps what it reads alive
  EXPECT_EQ(ReadFile(**file), "hello, ext");
}

TEST(ExtFs, TruncatedImageGivesErrorsNamingTheSource) {
  ScratchDir dir;
  fs::path root = dir.File("root");
  fs::create_directories(root);
  std::string big(4 * 1024 * 1024, 'z');
  WriteAt(root / "big", 0, big);
  fs::path img = dir.File("disk.img");
  ASSERT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-d", root.string(), img.string(), "32M"}), 0);
  std::vector<uint8_t> bytes = ReadAll(img);
  for (size_t cut : {size_t{1500}, size_t{5000}, size_t{1} << 20, bytes.size() / 2}) {
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + cut);
    auto gfs = OpenExtFs(std::make_shared<BufferSource>(std::move(part), "cut.img"));
    if (!gfs.ok()) {
      EXPECT_NE(gfs.status().message().find("cut.img"), std::string::npos)
          << gfs.status().message();
      continue;
    }
    // Opened: some read of the tree or of the file must fail, and name the source.
    std::vector<Status> errors;
    auto entries = (*gfs)->ReadDir((*gfs)->root());
    if (!entries.ok()) errors.push_back(entries.status());
    uint64_t ino = entries.ok() ? Lookup(**gfs, "big") : 0;
    if (ino != 0) {
      auto file = (*gfs)->Open(ino);
      if (!file.ok()) {
        errors.push_back(file.status());
      } else {
        std::string s((*file)->size(), '\0');
        Status st = (*file)->Read(0, {reinterpret_cast<uint8_t*>(s.data()), s.size()});
        if (!st.ok()) {
          errors.push_back(st);
        } else {
          EXPECT_EQ(s, big) << "cut at " << cut;
        }
      }
    }
    // Up to 1 MiB the inode table is cut; at half the file may lie wholly before the cut.
    if (cut <= (size_t{1} << 20)) {
      ASSERT_FALSE(errors.empty()) << "cut at " << cut;
    }
    for (const Status& s : errors) {
      EXPECT_NE(s.message().find("cut.img"), std::string::npos) << s.message();
    }
  }
}

TEST(ExtFs, ExtentPastTheEndIsAnErrorNamingTheInode) {
  ScratchDir dir;
  fs::path root = dir.File("root");
  fs::create_directories(root);
  WriteAt(root / "victim", 0, std::string(100000, 'v'));
  fs::path img = dir.File("disk.img");
  ASSERT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-d", root.string(), img.string(), "16M"}), 0);
  // i_block[0..2] is the extent header; [3] ee_block, [4] ee_len and ee_start_hi, [5]
  // ee_start_lo of the first extent in the inode's root node.
  ASSERT_EQ(RunTool({"debugfs", "-w", "-R", "sif /victim block[5] 0x7ffffff0", img.string()}), 0);
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(ReadAll(img), "bad.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  uint64_t ino = Lookup(**gfs, "victim");
  ASSERT_NE(ino, 0u);
  auto file = (*gfs)->Open(ino);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kCorruption);
  EXPECT_NE(file.status().message().find("bad.img inode " + std::to_string(ino)), std::string::npos)
      << file.status().message();
  EXPECT_NE(file.status().message().find("outside the filesystem"), std::string::npos)
      << file.status().message();
}

bool HasNote(const GuestFs& gfs, const std::string& text) {
  for (const std::string& n : gfs.Notes()) {
    if (n.find(text) != std::string::npos) return true;
  }
  return false;
}

// A crash-consistent copy: the image read while the kernel has it mounted read-write, after a
// sync committed new files to the journal but before unmount checkpointed them home.
std::vector<uint8_t> CrashConsistentCopy(const ScratchDir& dir, const fs::path& img) {
  fs::path mnt = dir.File("rw");
  fs::create_directories(mnt);
  if (RunTool({"mount", "-o", "loop", img.string(), mnt.string()}) != 0) return {};
  fs::create_directories(mnt / "newdir");
  WriteAt(mnt / "newdir/after", 0, "written after mkfs");
  sync();
  std::vector<uint8_t> copy = ReadAll(img);
  RunTool({"umount", "-d", mnt.string()});
  return copy;
}

TEST(ExtFs, JournalIsReplayedInMemory) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for a read-write loop mount";
  ScratchDir dir;
  fs::path root = dir.File("root");
  fs::create_directories(root);
  WriteAt(root / "before", 0, "from mkfs");
  fs::path img = dir.File("disk.img");
  ASSERT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-d", root.string(), img.string(), "32M"}), 0);
  std::vector<uint8_t> copy = CrashConsistentCopy(dir, img);
  ASSERT_FALSE(copy.empty());
  // The superblock says needs_recovery (s_feature_incompat at 1024 + 0x60, bit 0x4).
  ASSERT_TRUE(copy[1024 + 0x60] & 0x4);
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(std::move(copy), "crash.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  if (HasNote(**gfs, "replay stub")) GTEST_SKIP() << "jbd2_replay.cc is a local stub";
  ASSERT_TRUE(HasNote(**gfs, "journal replayed in memory: ")) << (*gfs)->Notes().front();
  uint64_t ino = Lookup(**gfs, "newdir/after");
  ASSERT_NE(ino, 0u);
  auto file = (*gfs)->Open(ino);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(ReadFile(**file), "written after mkfs");
  EXPECT_NE(Lookup(**gfs, "before"), 0u);
}

TEST(ExtFs, UnreplayableJournalShowsTheUnrecoveredStateWithANote) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for a read-write loop mount";
  ScratchDir dir;
  fs::path root = dir.File("root");
  fs::create_directories(root);
  WriteAt(root / "before", 0, "from mkfs");
  fs::path img = dir.File("disk.img");
  ASSERT_EQ(
      RunTool({"mkfs.ext4", "-q", "-F", "-b", "4096", "-d", root.string(), img.string(), "32M"}),
      0);
  // The journal superblock's block (journal inode 8, logical block 0).
  std::string bmap = RunToolOutput({"debugfs", "-R", "bmap <8> 0", img.string()});
  ASSERT_FALSE(bmap.empty());
  uint64_t jblock = std::stoull(bmap);
  std::vector<uint8_t> copy = CrashConsistentCopy(dir, img);
  ASSERT_FALSE(copy.empty());
  ASSERT_LT(jblock * 4096 + 4, copy.size());
  std::memset(copy.data() + jblock * 4096, 0, 4);  // no jbd2 magic any more
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(std::move(copy), "crash.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  ASSERT_TRUE(HasNote(**gfs, "journal not replayed")) << ::testing::PrintToString((*gfs)->Notes());
  EXPECT_TRUE(HasNote(**gfs, "the state shown is the unrecovered one"));
  auto before = (*gfs)->Open(Lookup(**gfs, "before"));
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_EQ(ReadFile(**before), "from mkfs");
}

// A small image built from `root` (mkfs.ext4 -d), the tree made by `fill`.
fs::path SmallImage(const ScratchDir& dir, const std::function<void(const fs::path&)>& fill,
                    const std::string& size = "16M") {
  fs::path root = dir.File("root");
  fs::create_directories(root);
  fill(root);
  fs::path img = dir.File("disk.img");
  EXPECT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-d", root.string(), img.string(), size}), 0);
  return img;
}

TEST(ExtFs, EncryptedInodesAreRefusedClearly) {
  ScratchDir dir;
  fs::path img = SmallImage(dir, [](const fs::path& root) {
    fs::create_directories(root / "secret");
    WriteAt(root / "secret/f", 0, "x");
    WriteAt(root / "file", 0, std::string(5000, 'f'));
    fs::create_symlink(std::string(100, 'l'), root / "link");
  });
  for (const char* path : {"/secret", "/file", "/link"}) {
    ASSERT_EQ(
        RunTool({"debugfs", "-w", "-R", std::string("sif ") + path + " flags 0x800", img.string()}),
        0);
  }
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(ReadAll(img), "enc.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  auto root = (*gfs)->ReadDir((*gfs)->root());
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  std::map<std::string, uint64_t> ino;
  for (const auto& e : *root) ino[e.name] = e.ino;
  auto dir_entries = (*gfs)->ReadDir(ino["secret"]);
  EXPECT_EQ(dir_entries.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(dir_entries.status().message().find("encrypted"), std::string::npos);
  EXPECT_EQ((*gfs)->Open(ino["file"]).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*gfs)->ReadLink(ino["link"]).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*gfs)->Stat(ino["file"]).ok());
}

TEST(ExtFs, ConcurrentCallsAgree) {
  ScratchDir dir;
  std::string content(300000, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7 + i / 4096);
  fs::path img = SmallImage(
      dir,
      [&](const fs::path& root) {
        for (int d = 0; d < 8; ++d) {
          fs::create_directories(root / ("d" + std::to_string(d)));
          for (int f = 0; f < 50; ++f) {
            WriteAt(root / ("d" + std::to_string(d)) / ("f" + std::to_string(f)), 0, content);
          }
        }
      },
      "256M");
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(ReadAll(img), "mt.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  GuestFs& g = **gfs;
  std::vector<std::thread> threads;
  std::vector<int> good(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto top = g.ReadDir(g.root());
      if (!top.ok()) return;
      for (const auto& d : *top) {
        auto entries = g.ReadDir(d.ino);
        if (!entries.ok()) continue;  // lost+found is fine; others are counted below
        for (size_t i = t % 2; i < entries->size(); i += 2) {
          auto a = g.Stat((*entries)[i].ino);
          auto f = g.Open((*entries)[i].ino);
          if (!a.ok() || !f.ok() || a->size != content.size()) continue;
          std::string got(content.size(), '\0');
          if (!(*f)->Read(0, {reinterpret_cast<uint8_t*>(got.data()), got.size()}).ok()) continue;
          if (got == content) ++good[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(good[t], 8 * 25) << "thread " << t;
}

// Random byte flips in the metadata: errors are fine, crashes and hangs are not.
TEST(ExtFs, CorruptedMetadataNeverCrashes) {
  ScratchDir dir;
  fs::path img = SmallImage(dir, [](const fs::path& root) {
    fs::create_directories(root / "a/b");
    for (int i = 0; i < 40; ++i)
      WriteAt(root / "a" / std::to_string(i), 0, std::string(i * 300, 'q'));
    fs::create_symlink(std::string(80, 'z'), root / "a/b/link");
  });
  const std::vector<uint8_t> clean = ReadAll(img);
  std::mt19937 rng(7);
  for (int round = 0; round < 400; ++round) {
    std::vector<uint8_t> bytes = clean;
    // The superblock, group descriptors, bitmaps, inode table and the first directory blocks.
    for (int i = 0; i < 20; ++i) bytes[1024 + rng() % (1024 * 1024)] ^= 1u << (rng() % 8);
    auto gfs = OpenExtFs(std::make_shared<BufferSource>(std::move(bytes), "flip.img"));
    if (!gfs.ok()) continue;
    std::vector<uint64_t> todo = {(*gfs)->root()};
    for (size_t n = 0; n < todo.size() && n < 200; ++n) {
      auto entries = (*gfs)->ReadDir(todo[n]);
      if (!entries.ok()) continue;
      for (const auto& e : *entries) {
        auto a = (*gfs)->Stat(e.ino);
        if (!a.ok()) continue;
        (void)(*gfs)->Xattrs(e.ino);
        if (S_ISDIR(a->mode)) todo.push_back(e.ino);
        if (S_ISLNK(a->mode)) (void)(*gfs)->ReadLink(e.ino);
        if (!S_ISREG(a->mode)) continue;
        auto f = (*gfs)->Open(e.ino);
        if (!f.ok()) continue;
        std::vector<uint8_t> buf(std::min<uint64_t>((*f)->size(), 1 << 20));
        (void)(*f)->Read(0, buf);
      }
    }
  }
}

TEST(ExtFs, UnsupportedIncompatFeaturesAreNamed) {
  ScratchDir dir;
  fs::path img = SmallImage(dir, [](const fs::path& root) { WriteAt(root / "f", 0, "f"); });
  std::vector<uint8_t> bytes = ReadAll(img);
  ASSERT_GT(bytes.size(), 2048u);
  bytes[1024 + 0x60] |= 0x01;  // s_feature_incompat: compression
  bytes[1024 + 0x63] |= 0x40;  // and an unknown bit, 30
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(std::move(bytes), "feat.img"));
  ASSERT_FALSE(gfs.ok());
  EXPECT_EQ(gfs.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(gfs.status().message().find("feat.img: ext filesystem with features compression, "
                                        "FEATURE_I30 that cannot be read"),
            std::string::npos)
      << gfs.status().message();
}

TEST(ExtFs, NotExtIsAnError) {
  auto gfs = OpenExtFs(std::make_shared<BufferSource>(std::vector<uint8_t>(1 << 20), "zeros"));
  ASSERT_FALSE(gfs.ok());
  EXPECT_NE(gfs.status().message().find("zeros: no ext2/3/4 superblock"), std::string::npos)
      << gfs.status().message();
}

TEST(ExtIo, OverlayReplacesWholeBlocksOnly) {
  std::vector<uint8_t> base(4096 * 4);
  for (size_t i = 0; i < base.size(); ++i) base[i] = static_cast<uint8_t>(i / 4096 + 1);
  std::map<uint64_t, std::vector<uint8_t>> blocks;
  blocks[1] = std::vector<uint8_t>(4096, 0xee);
  BlockOverlaySource overlay(std::make_shared<BufferSource>(base, "base"), std::move(blocks), 4096);
  std::vector<uint8_t> out(4096 * 2);
  ASSERT_TRUE(overlay.ReadAt(2048, out).ok());
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[2047], 1);
  EXPECT_EQ(out[2048], 0xee);
  EXPECT_EQ(out[2048 + 4095], 0xee);
  EXPECT_EQ(out[2048 + 4096], 3);
  EXPECT_FALSE(overlay.ReadAt(4096 * 4 - 10, std::span<uint8_t>(out).first(20)).ok());
}

}  // namespace
}  // namespace backupfs
