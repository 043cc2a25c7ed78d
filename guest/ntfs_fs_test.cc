// OpenNtfsFs against ntfs-3g itself: an image made by mkntfs and filled through an ntfs-3g
// mount, then compared path by path with the same image mounted read-only by ntfs-3g.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "guest/guest_fs.h"
#include "guest/test_support.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;
using guest_test::RunTool;
using guest_test::ScratchDir;
using guest_test::StartDetachedTool;
using guest_test::WaitTool;

bool IsMounted(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" " + dir + " ") != std::string::npos) return true;
  }
  return false;
}

// Waits (bounded) for a condition that a child process brings about.
bool WaitFor(const std::function<bool()>& cond) {
  for (int i = 0; i < 2000; ++i) {
    if (cond()) return true;
    usleep(5000);
  }
  return false;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

void SetMtime(const std::string& path, time_t sec, long nsec) {
  struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// A Windows symlink's reparse data (IO_REPARSE_TAG_SYMLINK) to `target`, absolute unless
// `relative` (flag 1).
std::string SymlinkReparse(const std::u16string& target, bool relative) {
  std::string data;
  auto put16 = [&](uint16_t v) { data.append({char(v & 0xff), char(v >> 8)}); };
  auto put32 = [&](uint32_t v) {
    put16(v & 0xffff);
    put16(v >> 16);
  };
  const uint16_t len = target.size() * 2;
  put32(0xA000000C);
  put16(12 + 2 * len);
  put16(0);
  put16(0);    // substitute name offset
  put16(len);  // substitute name length
  put16(len);  // print name offset
  put16(len);  // print name length
  put32(relative ? 1 : 0);
  for (int copy = 0; copy < 2; ++copy)
    for (char16_t c : target) put16(c);
  return data;
}

class NtfsFsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0 || RunTool({"mkntfs", "--version"}) == 127 ||
        RunTool({"ntfs-3g", "--version"}) == 127) {
      skip_ = "needs root, mkntfs and ntfs-3g";
      return;
    }
    dir_ = std::make_unique<ScratchDir>();
    image_ = dir_->File("ntfs.img");
    rw_ = dir_->File("rw");
    ro_ = dir_->File("ro");
    fs::create_directory(rw_);
    fs::create_directory(ro_);
    { std::ofstream(image_).close(); }
    fs::resize_file(image_, 64 << 20);
    ASSERT_EQ(RunTool({"mkntfs", "-F", "-f", "-q", image_}), 0);
    Fill();
    ASSERT_EQ(RunTool({"ntfs-3g", "-o", "ro", image_, ro_}), 0);
    ASSERT_TRUE(IsMounted(ro_));
  }

  static void TearDownTestSuite() {
    if (!dir_) return;
    if (IsMounted(ro_)) umount2(ro_.c_str(), MNT_DETACH);
    dir_.reset();
  }

  // Mounts the image read-write with ntfs-3g in the foreground, fills it, unmounts and waits
  // for ntfs-3g to exit (its image is then complete).
  static void Fill() {
    const pid_t pid = StartDetachedTool({"ntfs-3g", "-o", "no_detach,compression", image_, rw_});
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(WaitFor([] { return IsMounted(rw_); }));
    const std::string m = rw_;
    fs::create_directories(m + "/d1/d2/d3");
    std::mt19937 rng(13);
    std::string random(3 << 20, '\0');
    for (char& c : random) c = static_cast<char>(rng());
    WriteFile(m + "/d1/random.bin", random);
    WriteFile(m + "/d1/d2/d3/deep.txt", "deep\n");
    int fd = open((m + "/sparse.bin").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, "data", 4, 1 << 20), 4);
    ASSERT_EQ(pwrite(fd, "more", 4, 5 << 20), 4);
    ASSERT_EQ(ftruncate(fd, 8 << 20), 0);
    close(fd);
    WriteFile(m + "/d1/linked.txt", "two names\n");
    ASSERT_EQ(link((m + "/d1/linked.txt").c_str(), (m + "/d1/d2/other-name.txt").c_str()), 0);
    ASSERT_EQ(symlink("d1/random.bin", (m + "/rel-link").c_str()), 0);
    ASSERT_EQ(symlink("/etc/passwd", (m + "/abs-link").c_str()), 0);
    WriteFile(m + "/d1/with-ads.txt", "main\n");
    ASSERT_EQ(setxattr((m + "/d1/with-ads.txt").c_str(), "user.stream", "side data", 9, 0), 0);
    // Windows symlinks (reparse points) made through ntfs-3g's raw reparse xattr.
    WriteFile(m + "/d1/d2/win-abs", "");
    std::string abs = SymlinkReparse(u"\\??\\C:\\d1\\random.bin", false);
    ASSERT_EQ(setxattr((m + "/d1/d2/win-abs").c_str(), "system.ntfs_reparse_data", abs.data(),
                       abs.size(), 0),
              0);
    WriteFile(m + "/win-rel", "");
    std::string rel = SymlinkReparse(u"d1\\linked.txt", true);
    ASSERT_EQ(
        setxattr((m + "/win-rel").c_str(), "system.ntfs_reparse_data", rel.data(), rel.size(), 0),
        0);
    // A compressed file: text, 512 KiB of zeros (whole compression blocks: holes), random.
    fs::create_directory(m + "/comp");
    const char compressed_dir[4] = {0, 0, 0x08, 0x10};  // FILE_ATTR_COMPRESSED | DIRECTORY
    ASSERT_EQ(setxattr((m + "/comp").c_str(), "system.ntfs_attrib_be", compressed_dir, 4, 0), 0);
    std::string text;
    while (text.size() < (256 << 10)) text += "compressible text ";
    text.resize(256 << 10);
    WriteFile(m + "/comp/c.bin", text + std::string(512 << 10, '\0') + random.substr(0, 100000));
    SetMtime(m + "/d1/random.bin", 1500000000, 123456700);
    SetMtime(m + "/d1/d2", 1400000000, 0);
    ASSERT_EQ(umount(m.c_str()), 0);
    ASSERT_EQ(WaitTool(pid), 0);
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }

  static std::shared_ptr<const ByteSource> ImageSource(const std::string& path, std::string name) {
    std::string bytes = ReadAll(path);
    return std::make_shared<BufferSource>(std::vector<uint8_t>(bytes.begin(), bytes.end()),
                                          std::move(name));
  }

  static std::string skip_, image_, rw_, ro_;
  static std::unique_ptr<ScratchDir> dir_;
};
std::unique_ptr<ScratchDir> NtfsFsTest::dir_;
std::string NtfsFsTest::skip_, NtfsFsTest::image_, NtfsFsTest::rw_, NtfsFsTest::ro_;

std::string ReadGuest(GuestFs& gfs, uint64_t ino, uint64_t size) {
  auto file = gfs.Open(ino);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) return "";
  std::string out(size, '\0');
  // in pieces, as the mount reads
  for (uint64_t off = 0; off < size; off += 128 << 10) {
    uint64_t n = std::min<uint64_t>(128 << 10, size - off);
    Status s =
        (*file)->Read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()) + off, n));
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return out;
}

std::map<std::string, std::string> HostXattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  char names[4096];
  ssize_t n = llistxattr(path.c_str(), names, sizeof(names));
  for (ssize_t i = 0; i < n; i += strlen(names + i) + 1) {
    char value[65536];
    ssize_t v = lgetxattr(path.c_str(), names + i, value, sizeof(value));
    out[names + i] = v >= 0 ? std::string(value, v) : "<error>";
  }
  return out;
}

// Compares directory `ino` of our reader with `host` (ntfs-3g -o ro), recursively.
void CompareTree(GuestFs& gfs, uint64_t ino, const std::string& host, const std::string& root,
                 int* compared) {
  auto entries = gfs.ReadDir(ino);
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  std::map<std::string, const GuestDirEntry*> ours;
  for (const auto& e : *entries) ours[e.name] = &e;
  std::set<std::string> theirs;
  for (const auto& de : fs::directory_iterator(host)) theirs.insert(de.path().filename());
  std::set<std::string> our_names;
  for (const auto& [name, e] : ours) our_names.insert(name);
  EXPECT_EQ(our_names, theirs) << host;
  for (const auto& [name, e] : ours) {
    if (!theirs.count(name)) continue;
    const std::string path = host + "/" + name;
    struct stat st;
    ASSERT_EQ(lstat(path.c_str(), &st), 0) << path;
    auto a = gfs.Stat(e->ino);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    SCOPED_TRACE(path);
    ++*compared;
    EXPECT_EQ(a->ino, st.st_ino);
    EXPECT_EQ(e->ino, st.st_ino);
    EXPECT_EQ(a->mode, st.st_mode);
    EXPECT_EQ(e->type, st.st_mode & S_IFMT);
    EXPECT_EQ(a->uid, st.st_uid);
    EXPECT_EQ(a->gid, st.st_gid);
    EXPECT_EQ(a->nlink, st.st_nlink);
    EXPECT_EQ(a->mtime.tv_sec, st.st_mtim.tv_sec);
    EXPECT_EQ(a->mtime.tv_nsec, st.st_mtim.tv_nsec);
    EXPECT_EQ(a->ctime.tv_sec, st.st_ctim.tv_sec);
    EXPECT_EQ(a->atime.tv_sec, st.st_atim.tv_sec);
    if (S_ISLNK(st.st_mode)) {
      auto target = gfs.ReadLink(e->ino);
      ASSERT_TRUE(target.ok()) << target.status().ToString();
      std::string host_target = fs::read_symlink(path);
      if (!host_target.empty() && host_target[0] == '/' && host_target.starts_with(root + "/")) {
        // ntfs-3g shows a target on the volume under its mount point; ours is relative
        EXPECT_EQ(fs::weakly_canonical(fs::path(host) / *target),
                  fs::weakly_canonical(host_target));
        EXPECT_NE((*target)[0], '/');
      } else {
        EXPECT_EQ(*target, host_target);
        EXPECT_EQ(a->size, static_cast<uint64_t>(st.st_size));
      }
      EXPECT_EQ(a->size, target->size());
      continue;
    }
    EXPECT_EQ(a->size, static_cast<uint64_t>(st.st_size));
    std::map<std::string, std::string> our_x;
    auto x = gfs.Xattrs(e->ino);
    ASSERT_TRUE(x.ok()) << x.status().ToString();
    for (auto& [k, v] : *x) our_x[k] = v;
    EXPECT_EQ(our_x, HostXattrs(path));
    if (S_ISDIR(st.st_mode)) {
      CompareTree(gfs, e->ino, path, root, compared);
    } else if (S_ISREG(st.st_mode)) {
      EXPECT_TRUE(ReadGuest(gfs, e->ino, a->size) == ReadAll(path)) << "contents differ";
    }
  }
}

TEST_F(NtfsFsTest, ShowsWhatNtfs3gShows) {
  auto gfs = OpenNtfsFs(ImageSource(image_, "ntfs.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  EXPECT_EQ((*gfs)->type(), "ntfs");
  auto root = (*gfs)->Stat((*gfs)->root());
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  struct stat st;
  ASSERT_EQ(lstat(ro_.c_str(), &st), 0);
  EXPECT_EQ(root->ino, st.st_ino);
  EXPECT_EQ(root->mode, st.st_mode);
  EXPECT_EQ(root->size, static_cast<uint64_t>(st.st_size));
  int compared = 0;
  CompareTree(**gfs, (*gfs)->root(), ro_, ro_, &compared);
  EXPECT_EQ(compared, 15);  // every path filled in, none of the $ files
}

// Walks names from the root.
uint64_t Lookup(GuestFs& gfs, const std::string& path) {
  uint64_t ino = gfs.root();
  for (const auto& part : fs::path(path)) {
    auto entries = gfs.ReadDir(ino);
    if (!entries.ok()) return 0;
    uint64_t next = 0;
    for (const auto& e : *entries)
      if (e.name == part.string()) next = e.ino;
    if (next == 0) return 0;
    ino = next;
  }
  return ino;
}

TEST_F(NtfsFsTest, LinksAndStreams) {
  auto gfs = OpenNtfsFs(ImageSource(image_, "ntfs.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  GuestFs& g = **gfs;
  EXPECT_EQ(Lookup(g, "d1/linked.txt"), Lookup(g, "d1/d2/other-name.txt"));
  EXPECT_EQ(g.Stat(Lookup(g, "d1/linked.txt"))->nlink, 2u);
  EXPECT_EQ(*g.ReadLink(Lookup(g, "abs-link")), "/etc/passwd");  // Interix: as stored
  EXPECT_EQ(*g.ReadLink(Lookup(g, "d1/d2/win-abs")), "../../d1/random.bin");
  EXPECT_EQ(*g.ReadLink(Lookup(g, "win-rel")), "d1/linked.txt");
  auto x = g.Xattrs(Lookup(g, "d1/with-ads.txt"));
  ASSERT_TRUE(x.ok());
  ASSERT_EQ(x->size(), 1u);
  EXPECT_EQ((*x)[0].first, "user.stream");
  EXPECT_EQ((*x)[0].second, "side data");
  auto t = g.Stat(Lookup(g, "d1/random.bin"));
  EXPECT_EQ(t->mtime.tv_sec, 1500000000);
  EXPECT_EQ(t->mtime.tv_nsec, 123456700);
  EXPECT_FALSE(g.ReadLink(Lookup(g, "d1")).ok());
  EXPECT_FALSE(g.Open(Lookup(g, "d1")).ok());
}

TEST_F(NtfsFsTest, SparseFileHolesFromTheRunlist) {
  auto gfs = OpenNtfsFs(ImageSource(image_, "ntfs.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  auto file = (*gfs)->Open(Lookup(**gfs, "sparse.bin"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const uint64_t size = (*file)->size();
  ASSERT_EQ(size, 8u << 20);
  // What the kernel says of the same file on ntfs-3g's mount, where it reports holes at all.
  int fd = open((ro_ + "/sparse.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  off_t host_hole = lseek(fd, 0, SEEK_HOLE);
  close(fd);
  if (host_hole != static_cast<off_t>(size)) {
    EXPECT_EQ((*file)->NextHole(0), static_cast<uint64_t>(host_hole));
  }
  // The data written at 1 MiB and 5 MiB lies in allocated clusters, the rest is holes.
  EXPECT_EQ((*file)->NextHole(0), 0u);
  const uint64_t d1 = (*file)->NextData(0);
  EXPECT_LE(d1, 1u << 20);
  EXPECT_GT(d1, 0u);
  EXPECT_GT((*file)->NextHole(1 << 20), 1u << 20);
  EXPECT_LE((*file)->NextHole(1 << 20), 5u << 20);
  const uint64_t d2 = (*file)->NextData((*file)->NextHole(1 << 20));
  EXPECT_LE(d2, 5u << 20);
  EXPECT_GT(d2, 1u << 20);
  EXPECT_EQ((*file)->NextData((6 << 20)), size);
  EXPECT_EQ((*file)->NextHole(size - 1), size - 1);
  std::string bytes(8, '\0');
  ASSERT_TRUE(
      (*file)
          ->Read((5 << 20) - 4, std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes.data()), 8))
          .ok());
  EXPECT_EQ(bytes, std::string(4, '\0') + "more");
}

TEST_F(NtfsFsTest, CompressedFileReadsAndItsZeroBlocksAreHoles) {
  auto gfs = OpenNtfsFs(ImageSource(image_, "ntfs.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  const std::string host = ReadAll(ro_ + "/comp/c.bin");
  ASSERT_EQ(host.size(), (768u << 10) + 100000);
  struct stat st;
  ASSERT_EQ(stat((ro_ + "/comp/c.bin").c_str(), &st), 0);
  ASSERT_LT(static_cast<uint64_t>(st.st_blocks) * 512, host.size() / 2);  // really compressed
  const uint64_t ino = Lookup(**gfs, "comp/c.bin");
  EXPECT_TRUE(ReadGuest(**gfs, ino, host.size()) == host);
  auto file = (*gfs)->Open(ino);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->NextData(0), 0u);
  EXPECT_EQ((*file)->NextHole(0), 256u << 10);  // compressed blocks before are data
  EXPECT_EQ((*file)->NextData(256 << 10), 768u << 10);
  EXPECT_EQ((*file)->NextHole(768 << 10), host.size());
}

TEST_F(NtfsFsTest, TruncatedImageIsAnError) {
  std::string bytes = ReadAll(image_);
  bytes.resize(1 << 20);
  auto gfs = OpenNtfsFs(
      std::make_shared<BufferSource>(std::vector<uint8_t>(bytes.begin(), bytes.end()), "cut.img"));
  ASSERT_FALSE(gfs.ok()) << "a 1 MiB cut of a 64 MiB volume mounted";
  EXPECT_NE(gfs.status().message().find("cut.img"), std::string::npos) << gfs.status().message();
}

TEST_F(NtfsFsTest, CorruptBootSectorIsAnError) {
  std::string bytes = ReadAll(image_);
  std::memcpy(bytes.data() + 3, "XXXXXXXX", 8);  // the "NTFS    " OEM id
  auto gfs = OpenNtfsFs(std::make_shared<BufferSource>(
      std::vector<uint8_t>(bytes.begin(), bytes.end()), "bad-boot.img"));
  ASSERT_FALSE(gfs.ok());
  EXPECT_NE(gfs.status().message().find("bad-boot.img"), std::string::npos)
      << gfs.status().message();
  EXPECT_NE(gfs.status().message().find("cannot mount as NTFS"), std::string::npos)
      << gfs.status().message();
}

// The offset of MFT record `ino` in the image: records are 1 KiB, "FILE" at offset 0, their
// number at offset 44 (the first match: $MFT, not its mirror, comes first on mkntfs images).
size_t RecordOffset(const std::string& bytes, uint64_t ino, size_t from = 0) {
  for (size_t off = from; off + 1024 <= bytes.size(); off += 1024) {
    uint32_t num;
    std::memcpy(&num, bytes.data() + off + 44, 4);
    if (bytes.compare(off, 4, "FILE") == 0 && num == ino) return off;
  }
  return std::string::npos;
}

std::shared_ptr<const ByteSource> Source(const std::string& bytes, std::string name) {
  return std::make_shared<BufferSource>(std::vector<uint8_t>(bytes.begin(), bytes.end()),
                                        std::move(name));
}

TEST_F(NtfsFsTest, CorruptDirectoryRecordIsAnError) {
  auto good = OpenNtfsFs(ImageSource(image_, "ntfs.img"));
  ASSERT_TRUE(good.ok());
  const uint64_t ino = Lookup(**good, "d1/d2");
  std::string bytes = ReadAll(image_);
  const size_t at = RecordOffset(bytes, ino);
  ASSERT_NE(at, std::string::npos);
  for (size_t i = 24; i < 1024; i += 2) bytes[at + i] = static_cast<char>(i * 7);
  auto gfs = OpenNtfsFs(Source(bytes, "bad-dir.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  auto e = (*gfs)->ReadDir(ino);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("bad-dir.img: MFT record " + std::to_string(ino)),
            std::string::npos)
      << e.status().message();
  // the rest of the tree still reads
  EXPECT_TRUE((*gfs)->ReadDir((*gfs)->root()).ok());
}

// A volume not cleanly unmounted is shown read-only, with a note: the VOLUME_IS_DIRTY flag
// is set in $Volume's $VOLUME_INFORMATION (attribute 0x70, flags at value offset 10).
TEST_F(NtfsFsTest, DirtyVolumeIsShownWithANote) {
  std::string bytes = ReadAll(image_);
  // Both copies of record 3 ($MFT's and $MFTMirr's), which the mount compares.
  int set = 0;
  for (size_t from = 0; set < 2;) {
    const size_t rec = RecordOffset(bytes, 3, from);
    if (rec == std::string::npos) break;
    from = rec + 1024;
    uint16_t attr_off;
    std::memcpy(&attr_off, bytes.data() + rec + 20, 2);
    for (size_t a = rec + attr_off; a + 24 <= rec + 1024;) {
      uint32_t type, len;
      std::memcpy(&type, bytes.data() + a, 4);
      std::memcpy(&len, bytes.data() + a + 4, 4);
      if (type == 0xffffffff || len < 24 || len > 1024) break;
      if (type == 0x70) {
        uint16_t value_off;
        std::memcpy(&value_off, bytes.data() + a + 20, 2);
        bytes[a + value_off + 10] |= 1;
        ++set;
        break;
      }
      a += len;
    }
  }
  ASSERT_EQ(set, 2);
  auto gfs = OpenNtfsFs(Source(bytes, "dirty.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  auto notes = (*gfs)->Notes();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("dirty.img: NTFS volume marked dirty"), std::string::npos) << notes[0];
  EXPECT_TRUE((*gfs)->ReadDir((*gfs)->root()).ok());
}

// A source whose reads fail past 1 MiB: the error is the source's, as an I/O error.
class FailingSource final : public ByteSource {
 public:
  explicit FailingSource(std::shared_ptr<const ByteSource> base) : base_(std::move(base)) {}
  uint64_t size() const override { return base_->size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset + out.size() > (1 << 20)) {
      return Status::IOError("failing.img: injected read error at offset " +
                             std::to_string(offset));
    }
    return base_->ReadAt(offset, out);
  }
  const std::string& name() const override { return name_; }

 private:
  std::shared_ptr<const ByteSource> base_;
  std::string name_ = "failing.img";
};

TEST_F(NtfsFsTest, FailingReadsAreIOErrors) {
  auto gfs = OpenNtfsFs(std::make_shared<FailingSource>(ImageSource(image_, "ntfs.img")));
  ASSERT_FALSE(gfs.ok());
  EXPECT_EQ(gfs.status().code(), StatusCode::kIOError) << gfs.status().ToString();
  EXPECT_NE(gfs.status().message().find("injected read error"), std::string::npos)
      << gfs.status().message();
}

// Reads from many threads (each file's attribute kept open, more files than stay open).
TEST_F(NtfsFsTest, ConcurrentReads) {
  auto gfs = OpenNtfsFs(ImageSource(image_, "ntfs.img"));
  ASSERT_TRUE(gfs.ok());
  const std::vector<std::string> paths = {"d1/random.bin", "sparse.bin", "d1/linked.txt",
                                          "d1/with-ads.txt", "d1/d2/d3/deep.txt"};
  std::vector<std::string> expected;
  for (const auto& p : paths) expected.push_back(ReadAll(ro_ + "/" + p));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t i = 0; i < paths.size(); ++i) {
          size_t k = (i + t) % paths.size();
          if (ReadGuest(**gfs, Lookup(**gfs, paths[k]), expected[k].size()) != expected[k]) {
            ++mismatches;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(NtfsFsTest, CorruptMftRecordIsAnError) {
  auto good = OpenNtfsFs(ImageSource(image_, "ntfs.img"));
  ASSERT_TRUE(good.ok());
  const uint64_t ino = Lookup(**good, "d1/with-ads.txt");
  ASSERT_GT(ino, 0u);
  std::string bytes = ReadAll(image_);
  // Find the record by its magic and number: records are 1 KiB, "FILE" at offset 0, the
  // record number at offset 44.
  size_t at = std::string::npos;
  for (size_t off = 0; off + 1024 <= bytes.size(); off += 1024) {
    uint32_t num;
    std::memcpy(&num, bytes.data() + off + 44, 4);
    if (bytes.compare(off, 4, "FILE") == 0 && num == ino) at = off;
  }
  ASSERT_NE(at, std::string::npos);
  for (size_t i = 56; i < 1024; ++i) bytes[at + i] = static_cast<char>(0xA5);  // its attributes
  auto gfs = OpenNtfsFs(std::make_shared<BufferSource>(
      std::vector<uint8_t>(bytes.begin(), bytes.end()), "bad-mft.img"));
  ASSERT_TRUE(gfs.ok()) << gfs.status().ToString();
  auto a = (*gfs)->Stat(ino);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("bad-mft.img: MFT record " + std::to_string(ino)),
            std::string::npos)
      << a.status().message();
  EXPECT_FALSE((*gfs)->Open(ino).ok());
  EXPECT_FALSE((*gfs)->Xattrs(ino).ok());
}

}  // namespace
}  // namespace backupfs
