#include "storage/disk_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "stream/test_util.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;
using testing::RandomBytes;
using testing::ScratchDir;

constexpr size_t kHeaderBytes = 32;  // as documented in disk_cache.cc

std::span<const uint8_t> Span(const std::vector<uint8_t>& v) { return v; }

std::string Str(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

std::shared_ptr<DiskCache> OpenCache(const std::string& dir, uint64_t max_bytes) {
  auto cache = DiskCache::Open(dir, max_bytes);
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  return cache.ok() ? *cache : nullptr;
}

// The bytes kept for `key`, or "<miss>"; a Get error fails the test.
std::string Lookup(DiskCache& cache, const std::string& key) {
  auto got = cache.Get(key);
  EXPECT_TRUE(got.ok()) << got.status().ToString();
  return got.ok() && *got ? **got : "<miss>";
}

// Entry files under `dir` (the fan-out subdirectories), temporary files excluded.
std::vector<fs::path> EntryFiles(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".blob") files.push_back(e.path());
  }
  return files;
}

uint64_t BytesOnDisk(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& f : EntryFiles(dir)) total += fs::file_size(f);
  return total;
}

// Overwrites `n` bytes at `offset` of the only entry file under `dir`.
void Damage(const std::string& dir, uint64_t offset, const std::string& bytes) {
  auto files = EntryFiles(dir);
  ASSERT_EQ(files.size(), 1u);
  int fd = ::open(files[0].c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

TEST(DiskCacheTest, PutThenGetReturnsTheBytes) {
  ScratchDir dir;
  auto cache = OpenCache(dir.File("cache"), 1 << 20);
  const auto big = RandomBytes(100000, 1), one = RandomBytes(1, 2);
  ASSERT_TRUE(cache->Put("big", Span(big)).ok());
  ASSERT_TRUE(cache->Put("one", Span(one)).ok());
  ASSERT_TRUE(cache->Put("empty", {}).ok());
  EXPECT_EQ(Lookup(*cache, "big"), Str(big));
  EXPECT_EQ(Lookup(*cache, "one"), Str(one));
  EXPECT_EQ(Lookup(*cache, "empty"), "");
  EXPECT_EQ(Lookup(*cache, "absent"), "<miss>");
  EXPECT_EQ(cache->dir(), dir.File("cache"));
  EXPECT_EQ(BytesOnDisk(dir.File("cache")), 3 * kHeaderBytes + 3 + 3 + 5 + 100000 + 1);
}

TEST(DiskCacheTest, PutReplacesAnEntry) {
  ScratchDir dir;
  auto cache = OpenCache(dir.path(), 1 << 20);
  ASSERT_TRUE(cache->Put("k", Span(RandomBytes(5000, 1))).ok());
  ASSERT_TRUE(cache->Put("k", Span(RandomBytes(300, 2))).ok());
  EXPECT_EQ(Lookup(*cache, "k"), Str(RandomBytes(300, 2)));
  EXPECT_EQ(EntryFiles(dir.path()).size(), 1u);
}

TEST(DiskCacheTest, EntriesSurviveReopen) {
  ScratchDir dir;
  const auto bytes = RandomBytes(4096, 3);
  ASSERT_TRUE(OpenCache(dir.path(), 1 << 20)->Put("s3://b/vm/vda.full.data#7", Span(bytes)).ok());
  auto reopened = OpenCache(dir.path(), 1 << 20);
  EXPECT_EQ(Lookup(*reopened, "s3://b/vm/vda.full.data#7"), Str(bytes));
}

// Each kind of damage: the entry reads as a miss and its file is deleted.
class DamagedEntryTest : public ::testing::TestWithParam<int> {};

TEST_P(DamagedEntryTest, IsDroppedAndDeleted) {
  ScratchDir dir;
  auto cache = OpenCache(dir.path(), 1 << 20);
  const std::string key = "the key";
  ASSERT_TRUE(cache->Put(key, Span(RandomBytes(1000, 4))).ok());
  const std::string file = EntryFiles(dir.path()).at(0);
  switch (GetParam()) {
    case 0:  // a flipped content byte
      Damage(dir.path(), kHeaderBytes + key.size() + 500, "\x5a");
      break;
    case 1:  // torn: the tail never reached the disk
      ASSERT_EQ(::truncate(file.c_str(), kHeaderBytes + key.size() + 999), 0);
      break;
    case 2:  // not one of ours
      Damage(dir.path(), 0, "NOTCACHE");
      break;
    case 3:  // a key of the same hash (a collision) or a stray rename
      Damage(dir.path(), kHeaderBytes, "THE");
      break;
    case 4:  // a recorded length that disagrees with the file
      Damage(dir.path(), 16, std::string("\x10\x27\0\0\0\0\0\0", 8));
      break;
    case 5:  // zero-filled after a crash
      Damage(dir.path(), 0, std::string(kHeaderBytes + key.size() + 1000, '\0'));
      break;
  }
  EXPECT_EQ(Lookup(*cache, key), "<miss>");
  EXPECT_FALSE(fs::exists(file));
  // And the same through a fresh instance that never saw the entry put.
  ASSERT_TRUE(cache->Put(key, Span(RandomBytes(1000, 4))).ok());
  ASSERT_EQ(::truncate(EntryFiles(dir.path()).at(0).c_str(), 10), 0);
  EXPECT_EQ(Lookup(*OpenCache(dir.path(), 1 << 20), key), "<miss>");
  EXPECT_TRUE(EntryFiles(dir.path()).empty());
}

INSTANTIATE_TEST_SUITE_P(Kinds, DamagedEntryTest, ::testing::Range(0, 6));

TEST(DiskCacheTest, BoundEvictsTheLeastRecentlyUsed) {
  ScratchDir dir;
  const uint64_t entry = kHeaderBytes + 2 + 1000;  // keys "k0".."k9"
  auto cache = OpenCache(dir.path(), 5 * entry);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(cache->Put("k" + std::to_string(i), Span(RandomBytes(1000, i))).ok());
  }
  EXPECT_EQ(Lookup(*cache, "k0"), Str(RandomBytes(1000, 0)));  // now the most recent
  ASSERT_TRUE(cache->Put("k5", Span(RandomBytes(1000, 5))).ok());
  EXPECT_EQ(Lookup(*cache, "k1"), "<miss>");  // the least recently used went
  EXPECT_EQ(Lookup(*cache, "k0"), Str(RandomBytes(1000, 0)));
  EXPECT_EQ(Lookup(*cache, "k5"), Str(RandomBytes(1000, 5)));
  for (int i = 6; i < 10; ++i) {
    ASSERT_TRUE(cache->Put("k" + std::to_string(i), Span(RandomBytes(1000, i))).ok());
    EXPECT_LE(BytesOnDisk(dir.path()), 5 * entry);
  }
  EXPECT_EQ(EntryFiles(dir.path()).size(), 5u);
}

TEST(DiskCacheTest, OrderOfUseSurvivesReopen) {
  ScratchDir dir;
  const uint64_t entry = kHeaderBytes + 2 + 1000;
  {
    auto cache = OpenCache(dir.path(), 3 * entry);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(cache->Put("k" + std::to_string(i), Span(RandomBytes(1000, i))).ok());
    }
    EXPECT_NE(Lookup(*cache, "k0"), "<miss>");  // k1 is now the least recently used
  }
  auto reopened = OpenCache(dir.path(), 3 * entry);
  ASSERT_TRUE(reopened->Put("k3", Span(RandomBytes(1000, 3))).ok());
  EXPECT_EQ(Lookup(*reopened, "k1"), "<miss>");
  EXPECT_NE(Lookup(*reopened, "k0"), "<miss>");
  EXPECT_NE(Lookup(*reopened, "k2"), "<miss>");
}

TEST(DiskCacheTest, OpenTrimsToASmallerBound) {
  ScratchDir dir;
  const uint64_t entry = kHeaderBytes + 2 + 1000;
  {
    auto cache = OpenCache(dir.path(), 10 * entry);
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(cache->Put("k" + std::to_string(i), Span(RandomBytes(1000, i))).ok());
    }
  }
  auto smaller = OpenCache(dir.path(), 4 * entry);
  EXPECT_EQ(EntryFiles(dir.path()).size(), 4u);
  EXPECT_NE(Lookup(*smaller, "k9"), "<miss>");
  EXPECT_EQ(Lookup(*smaller, "k0"), "<miss>");
}

// Two instances stand for two processes sharing the directory.
TEST(DiskCacheTest, InstancesShareADirectoryAndItsBound) {
  ScratchDir dir;
  const uint64_t entry = kHeaderBytes + 2 + 1000;
  auto a = OpenCache(dir.path(), 4 * entry);
  auto b = OpenCache(dir.path(), 4 * entry);
  ASSERT_TRUE(a->Put("a0", Span(RandomBytes(1000, 10))).ok());
  EXPECT_EQ(Lookup(*b, "a0"), Str(RandomBytes(1000, 10)));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a->Put("a" + std::to_string(i), Span(RandomBytes(1000, 10 + i))).ok());
    ASSERT_TRUE(b->Put("b" + std::to_string(i), Span(RandomBytes(1000, 20 + i))).ok());
  }
  EXPECT_LE(BytesOnDisk(dir.path()), 4 * entry);
  EXPECT_EQ(Lookup(*a, "b3"), Str(RandomBytes(1000, 23)));
  // An entry the other instance evicted is a miss here, not an error.
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(a->Get("a" + std::to_string(i)).ok());
}

TEST(DiskCacheTest, AnEntryLargerThanTheBoundIsRefused) {
  ScratchDir dir;
  auto cache = OpenCache(dir.path(), 1000);
  Status s = cache->Put("k", Span(RandomBytes(1000, 1)));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(dir.path()), std::string::npos) << s.message();
  EXPECT_EQ(Lookup(*cache, "k"), "<miss>");
  EXPECT_TRUE(EntryFiles(dir.path()).empty());
}

TEST(DiskCacheTest, OpenRemovesStaleTemporaryFilesOnly) {
  ScratchDir dir;
  fs::create_directories(dir.File("ab"));
  const std::string stale = dir.File("ab/ab00000000000000.blob.tmp.1.0");
  const std::string fresh = dir.File("ab/ab00000000000000.blob.tmp.2.0");
  const std::string foreign = dir.File("ab/notes.txt");
  for (const auto& f : {stale, fresh, foreign}) testing::WriteFileBytes(f, RandomBytes(10, 1));
  const timespec old[2] = {{::time(nullptr) - 7200, 0}, {::time(nullptr) - 7200, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, stale.c_str(), old, 0), 0);
  OpenCache(dir.path(), 1 << 20);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(fresh));  // another process may be writing it
  EXPECT_TRUE(fs::exists(foreign));
}

TEST(DiskCacheTest, OpenOfAFileIsAnError) {
  ScratchDir dir;
  testing::WriteFileBytes(dir.File("f"), RandomBytes(10, 1));
  auto cache = DiskCache::Open(dir.File("f"), 1 << 20);
  ASSERT_FALSE(cache.ok());
  EXPECT_NE(cache.status().message().find(dir.File("f")), std::string::npos);
}

}  // namespace
}  // namespace backupfs
