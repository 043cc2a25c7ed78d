#include "storage/read_cache.h"

#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "storage/disk_cache.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

using testing::RandomBytes;
using testing::ScratchDir;
using Clock = std::chrono::steady_clock;

// What a TestRemote saw and how it misbehaves; the test keeps it after Wrap takes the file.
class Probe {
 public:
  // Reads wait at the gate while it is closed (to hold fetches in flight).
  void CloseGate() {
    std::lock_guard lock(mu_);
    gate_closed_ = true;
  }
  void OpenGate() {
    std::lock_guard lock(mu_);
    gate_closed_ = false;
    cv_.notify_all();
  }
  // Reads overlapping [offset, offset + length) fail.
  void Fail(uint64_t offset, uint64_t length) {
    std::lock_guard lock(mu_);
    fail_ = {offset, offset + length};
  }
  void Heal() {
    std::lock_guard lock(mu_);
    fail_ = {0, 0};
  }
  // For the benchmark only: each read sleeps this long, plus its bytes at `bytes_per_s`.
  void SetLatency(std::chrono::microseconds latency, double bytes_per_s) {
    std::lock_guard lock(mu_);
    latency_ = latency;
    bytes_per_s_ = bytes_per_s;
  }

  // Waits (at most 10 s) until `pred` holds over the offsets read so far and the number of
  // reads waiting at the gate.
  bool WaitFor(const std::function<bool(const std::vector<uint64_t>&, int)>& pred) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return pred(offsets_, waiting_); });
  }
  std::vector<uint64_t> offsets() const {
    std::lock_guard lock(mu_);
    return offsets_;
  }
  size_t CountOf(uint64_t offset) const {
    auto o = offsets();
    return std::count(o.begin(), o.end(), offset);
  }

  // Called by TestRemote::ReadAt: records the read, waits at the gate; false to fail it.
  bool Enter(uint64_t offset, uint64_t length) {
    std::unique_lock lock(mu_);
    offsets_.push_back(offset);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !gate_closed_; });
    --waiting_;
    const auto delay = latency_ + std::chrono::microseconds(static_cast<int64_t>(
                                      bytes_per_s_ > 0 ? length * 1e6 / bytes_per_s_ : 0));
    const bool fail = offset < fail_.second && offset + length > fail_.first;
    lock.unlock();
    if (delay.count() > 0) std::this_thread::sleep_for(delay);  // the benchmark's network
    return !fail;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> offsets_;
  int waiting_ = 0;
  bool gate_closed_ = false;
  std::pair<uint64_t, uint64_t> fail_{0, 0};
  std::chrono::microseconds latency_{0};
  double bytes_per_s_ = 0;
};

// A remote file over a memory buffer, observed and steered through its Probe.
class TestRemote final : public StoredFile {
 public:
  TestRemote(std::shared_ptr<const std::vector<uint8_t>> bytes, std::string name,
             std::string version, std::shared_ptr<Probe> probe)
      : bytes_(std::move(bytes)),
        name_(std::move(name)),
        version_(std::move(version)),
        probe_(std::move(probe)) {}
  uint64_t size() const override { return bytes_->size(); }
  const std::string& name() const override { return name_; }
  const std::string& version() const override { return version_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (!probe_->Enter(offset, out.size())) {
      return Status::IOError(name_ + ": offset " + std::to_string(offset) + ": injected failure");
    }
    return MemorySource(*bytes_, name_).ReadAt(offset, out);
  }

 private:
  std::shared_ptr<const std::vector<uint8_t>> bytes_;
  std::string name_, version_;
  std::shared_ptr<Probe> probe_;
};

constexpr uint64_t kBlock = 4096;

ReadCacheOptions SmallOptions() {
  ReadCacheOptions o;
  o.block_bytes = kBlock;
  o.memory_bytes = 64 * kBlock;
  o.fetch_threads = 4;
  o.max_readahead = 8 * kBlock;
  return o;
}

struct Fixture {
  explicit Fixture(uint64_t size, ReadCacheOptions o = SmallOptions(), std::string version = "v1",
                   uint64_t seed = 1)
      : bytes(std::make_shared<const std::vector<uint8_t>>(RandomBytes(size, seed))),
        probe(std::make_shared<Probe>()),
        cache(ReadCache::Create(o)),
        file(cache->Wrap(
            std::make_unique<TestRemote>(bytes, "s3://b/vm/vda.full.data", version, probe))) {}
  std::shared_ptr<const std::vector<uint8_t>> bytes;
  std::shared_ptr<Probe> probe;
  std::shared_ptr<ReadCache> cache;
  std::unique_ptr<StoredFile> file;
};

// Reads [offset, offset + n) and checks it against the buffer; returns whether it matched.
::testing::AssertionResult ReadsExactly(const StoredFile& file, const std::vector<uint8_t>& want,
                                        uint64_t offset, uint64_t n) {
  std::vector<uint8_t> got(n, 0xee);
  Status s = file.ReadAt(offset, got);
  if (!s.ok()) return ::testing::AssertionFailure() << s.ToString();
  if (!std::equal(got.begin(), got.end(), want.begin() + offset)) {
    return ::testing::AssertionFailure() << "wrong bytes at " << offset << " +" << n;
  }
  return ::testing::AssertionSuccess();
}

// Waits (at most 10 s) for a condition on the cache's counters.
bool WaitForStats(const ReadCache& cache, const std::function<bool(const ReadCache::Stats&)>& p) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!p(cache.stats())) {
    if (Clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(ReadCacheTest, RandomRangesAreByteExact) {
  const uint64_t size = 37 * kBlock + 2000;  // a partial last block
  ReadCacheOptions o = SmallOptions();
  o.memory_bytes = 8 * kBlock;  // evictions all the time
  Fixture f(size, o);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 4000; ++i) {
    uint64_t offset = rng() % (size + 1);
    if (i % 4 == 0) offset = size - std::min<uint64_t>(size, rng() % (2 * kBlock));  // the tail
    const uint64_t n = rng() % (std::min<uint64_t>(3 * kBlock, size - offset) + 1);
    ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, offset, n)) << "read " << i;
  }
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 0, size));
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, size - 1, 1));
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, size, 0));
  EXPECT_EQ(f.file->size(), size);
  EXPECT_EQ(f.file->name(), "s3://b/vm/vda.full.data");
  EXPECT_EQ(f.file->version(), "v1");
  EXPECT_EQ(f.file->fd(), -1);
  EXPECT_GT(f.cache->stats().memory_hits, 0u);
}

TEST(ReadCacheTest, ReadsPastTheEndAreCorruptionNamingTheFile) {
  Fixture f(3 * kBlock + 10);
  std::vector<uint8_t> out(11);
  Status s = f.file->ReadAt(3 * kBlock, out);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("s3://b/vm/vda.full.data: offset 12288: 11 bytes past the end"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(f.file->ReadAt(3 * kBlock + 11, {}).code(), StatusCode::kCorruption);
  EXPECT_TRUE(f.probe->offsets().empty());  // refused before any fetch

  Fixture empty(0);
  EXPECT_TRUE(empty.file->ReadAt(0, {}).ok());
  std::vector<uint8_t> one(1);
  EXPECT_EQ(empty.file->ReadAt(0, one).code(), StatusCode::kCorruption);
  empty.file->WillNeed(0, 100);
}

TEST(ReadCacheTest, EightThreadsReadByteExact) {
  const uint64_t size = 100 * kBlock + 123;
  ReadCacheOptions o = SmallOptions();
  o.memory_bytes = 16 * kBlock;  // readers hold blocks while others evict them
  Fixture f(size, o);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      uint64_t pos = (t * 12 * kBlock) % size;  // half sequential scans, half random reads
      for (int i = 0; i < 600; ++i) {
        uint64_t offset = t % 2 ? rng() % size : pos;
        const uint64_t n = std::min<uint64_t>(size - offset, 1 + rng() % (2 * kBlock));
        if (!ReadsExactly(*f.file, *f.bytes, offset, n)) ++bad;
        pos = offset + n == size ? 0 : offset + n;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(f.cache->stats().peak_kept_bytes, o.memory_bytes);
}

TEST(ReadCacheTest, ConcurrentReadersOfOneBlockShareOneFetch) {
  ReadCacheOptions o = SmallOptions();
  o.max_readahead = 0;  // only the readers' own fetches
  Fixture f(16 * kBlock, o);
  f.probe->CloseGate();
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      if (!ReadsExactly(*f.file, *f.bytes, 3 * kBlock + t * 500, 500)) ++bad;
    });
  }
  ASSERT_TRUE(f.probe->WaitFor([](auto&, int waiting) { return waiting == 1; }));
  ASSERT_TRUE(WaitForStats(*f.cache, [](auto& s) { return s.shared == 7; }));
  f.probe->OpenGate();
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(f.probe->offsets(), std::vector<uint64_t>{3 * kBlock});
  EXPECT_EQ(f.cache->stats().fetches, 1u);
}

TEST(ReadCacheTest, AReadOfSeveralBlocksFetchesThemInParallel) {
  ReadCacheOptions o = SmallOptions();
  o.max_readahead = 0;
  Fixture f(16 * kBlock, o);
  f.probe->CloseGate();
  std::thread reader([&] { EXPECT_TRUE(ReadsExactly(*f.file, *f.bytes, 100, 4 * kBlock)); });
  // Blocks 0..4: the reader fetches the first, the 4 fetch threads the others.
  EXPECT_TRUE(f.probe->WaitFor([](auto&, int waiting) { return waiting == 5; }));
  f.probe->OpenGate();
  reader.join();
  EXPECT_EQ(f.cache->stats().fetches, 5u);
}

TEST(ReadCacheTest, AFailedFetchReachesEveryWaiterAndIsNotKept) {
  ReadCacheOptions o = SmallOptions();
  o.max_readahead = 0;
  Fixture f(8 * kBlock, o);
  f.probe->Fail(2 * kBlock + 100, 1);
  f.probe->CloseGate();
  std::vector<std::thread> threads;
  std::vector<Status> results(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> out(100);
      results[t] = f.file->ReadAt(2 * kBlock + t * 1000, out);
    });
  }
  ASSERT_TRUE(f.probe->WaitFor([](auto&, int waiting) { return waiting == 1; }));
  ASSERT_TRUE(WaitForStats(*f.cache, [](auto& s) { return s.shared == 3; }));
  f.probe->OpenGate();
  for (auto& t : threads) t.join();
  for (const Status& s : results) {
    EXPECT_EQ(s.code(), StatusCode::kIOError);
    EXPECT_EQ(s.message(), "s3://b/vm/vda.full.data: offset 8192: injected failure");
  }
  EXPECT_EQ(f.probe->CountOf(2 * kBlock), 1u);

  f.probe->Heal();  // the next read fetches again
  EXPECT_TRUE(ReadsExactly(*f.file, *f.bytes, 2 * kBlock, kBlock));
  EXPECT_EQ(f.probe->CountOf(2 * kBlock), 2u);
  EXPECT_TRUE(ReadsExactly(*f.file, *f.bytes, 2 * kBlock + 7, 10));
  EXPECT_EQ(f.probe->CountOf(2 * kBlock), 2u);  // kept now
}

TEST(ReadCacheTest, SequentialScanFetchesAheadOfTheReader) {
  const uint64_t blocks = 48;
  Fixture f(blocks * kBlock);
  // Two pieces of block 0 make the reader sequential: blocks 1 and 2 are fetched ahead.
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 0, 1024));
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 1024, 1024));
  ASSERT_TRUE(f.probe->WaitFor([](const std::vector<uint64_t>& offsets, int) {
    return std::count(offsets.begin(), offsets.end(), 2 * kBlock) == 1;
  }));
  // The window widens as the reader goes on: 4 blocks ahead from block 1, 8 from block 2.
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 2048, kBlock));
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 2048 + kBlock, kBlock));
  ASSERT_TRUE(f.probe->WaitFor([](const std::vector<uint64_t>& offsets, int) {
    return std::count(offsets.begin(), offsets.end(), 10 * kBlock) == 1;
  }));
  // Pieces of 1 KiB delivered out of order, as by FUSE's parallel readers.
  for (uint64_t pos = 2048 + 2 * kBlock; pos < blocks * kBlock; pos += 2048) {
    ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, pos + 1024, 1024));
    ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, pos, 1024));
  }
  f.cache.reset();  // joins the fetch threads
  std::vector<uint64_t> offsets = f.probe->offsets();
  std::sort(offsets.begin(), offsets.end());
  std::vector<uint64_t> each_once;
  for (uint64_t i = 0; i < blocks; ++i) each_once.push_back(i * kBlock);
  EXPECT_EQ(offsets, each_once);
}

// backupfs loads a saveset, maybe fetching ahead, before it forks into the background: the
// child, which has only the forking thread, must still fetch ahead (and never wait for a fetch
// that a thread of the parent was running).
TEST(ReadCacheTest, FetchThreadsRunAgainAfterAFork) {
  const uint64_t blocks = 48;
  Fixture f(blocks * kBlock);
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 0, 1024));
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 1024, 1024));  // sequential: fetching ahead
  pid_t pid = -1;
  {
    ReadCache::PausedForFork paused;  // as backupfs around fuse_daemonize
    pid = fork();
  }
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const uint64_t before = f.cache->stats().prefetched;
    bool ok = ReadsExactly(*f.file, *f.bytes, 2048, 8 * kBlock);
    // Readahead continues in the child: blocks queued past what was read get fetched.
    ok = ok &&
         WaitForStats(*f.cache, [&](const ReadCache::Stats& st) { return st.prefetched > before; });
    for (uint64_t pos = 2048 + 8 * kBlock; ok && pos < blocks * kBlock; pos += kBlock) {
      ok = ReadsExactly(*f.file, *f.bytes, pos, std::min(kBlock, blocks * kBlock - pos));
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  // And the parent goes on as before.
  EXPECT_TRUE(ReadsExactly(*f.file, *f.bytes, 0, blocks * kBlock));
}

// Any other fork (a subprocess that runs a program) leaves the fetch threads alone: it neither
// waits for a fetch in flight nor stops the threads.
TEST(ReadCacheTest, AForkWithoutPauseDoesNotWaitForFetchesInFlight) {
  const uint64_t blocks = 8;
  Fixture f(blocks * kBlock);
  f.probe->CloseGate();
  f.file->WillNeed(0, blocks * kBlock);
  ASSERT_TRUE(f.probe->WaitFor([](const std::vector<uint64_t>&, int waiting) {
    return waiting >= 1;
  }));  // a fetch thread is held in its fetch
  std::promise<pid_t> forked;
  std::future<pid_t> pid_future = forked.get_future();
  std::thread spawner([&] {
    const pid_t p = fork();
    if (p == 0) {
      execl("/bin/true", "true", static_cast<char*>(nullptr));
      _exit(127);
    }
    forked.set_value(p);
  });
  const bool returned = pid_future.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  f.probe->OpenGate();  // lets a fork stuck behind the fetch go, so that the test ends
  spawner.join();
  EXPECT_TRUE(returned) << "fork waited for a fetch in flight";
  const pid_t pid = pid_future.get();
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_TRUE(ReadsExactly(*f.file, *f.bytes, 0, blocks * kBlock));
}

TEST(ReadCacheTest, SequentialScanCountsPrefetchesAndHits) {
  const uint64_t blocks = 40;
  Fixture f(blocks * kBlock);
  for (uint64_t pos = 0; pos < blocks * kBlock; pos += 1024) {
    ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, pos, 1024));
  }
  const ReadCache::Stats s = f.cache->stats();
  EXPECT_EQ(s.fetches, blocks);
  EXPECT_EQ(s.fetched_bytes, blocks * kBlock);
  EXPECT_EQ(s.prefetched, blocks - 1);   // all but the first block
  EXPECT_GE(s.memory_hits, 3 * blocks);  // every piece after a block's first
}

TEST(ReadCacheTest, RandomReadsDoNotFetchAhead) {
  const uint64_t blocks = 64;
  Fixture f(blocks * kBlock);
  std::mt19937_64 rng(3);
  std::vector<uint64_t> recent, read_blocks;
  for (int tries = 0; read_blocks.size() < 30 && tries < 10000; ++tries) {
    const uint64_t b = rng() % blocks;
    // More than one block away from where any of the last 4 reads ended, and not read yet.
    bool near = std::count(read_blocks.begin(), read_blocks.end(), b * kBlock) > 0;
    for (uint64_t r : recent) near |= b + 1 >= r && b <= r + 2;
    if (near) continue;
    ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, b * kBlock + 100, 1000));
    recent.push_back(b);
    if (recent.size() > 4) recent.erase(recent.begin());
    read_blocks.push_back(b * kBlock);
  }
  ASSERT_EQ(read_blocks.size(), 30u);
  EXPECT_EQ(f.cache->stats().prefetched, 0u);
  EXPECT_EQ(f.probe->offsets(), read_blocks);
}

TEST(ReadCacheTest, WillNeedFetchesInTheBackground) {
  Fixture f(32 * kBlock + 5);
  f.file->WillNeed(5 * kBlock + 10, 3 * kBlock);  // blocks 5..8
  f.file->WillNeed(31 * kBlock, 2 * kBlock);      // the last two, cut at the end
  ASSERT_TRUE(f.probe->WaitFor([](const std::vector<uint64_t>& o, int) { return o.size() == 6; }));
  ASSERT_TRUE(WaitForStats(*f.cache, [](auto& s) { return s.kept_bytes == 5 * kBlock + 5; }));
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 5 * kBlock + 10, 3 * kBlock));
  ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, 31 * kBlock, kBlock + 5));
  EXPECT_EQ(f.probe->offsets().size(), 6u);
  EXPECT_EQ(f.cache->stats().prefetched, 6u);
}

TEST(ReadCacheTest, MemoryBoundHoldsUnderReadahead) {
  ReadCacheOptions o = SmallOptions();
  o.memory_bytes = 16 * kBlock;
  o.max_readahead = 64 * kBlock;  // more than memory allows: capped at memory / 4
  Fixture f(100 * kBlock + 77, o);
  std::mt19937_64 rng(5);
  for (uint64_t pos = 0; pos < f.file->size(); pos += 700) {
    ASSERT_TRUE(
        ReadsExactly(*f.file, *f.bytes, pos, std::min<uint64_t>(700, f.file->size() - pos)));
    if (pos % 7 == 0) {  // a random byte now and then
      ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, rng() % f.file->size(), 1));
    }
    ASSERT_LE(f.cache->stats().kept_bytes, o.memory_bytes);
  }
  EXPECT_GT(f.cache->stats().prefetched, 0u);
}

TEST(ReadCacheTest, PeakMemoryStaysWithinTheBound) {
  ReadCacheOptions o = SmallOptions();
  o.memory_bytes = 10 * kBlock;
  Fixture f(200 * kBlock, o);
  for (uint64_t pos = 0; pos < f.file->size(); pos += 3000) {
    ASSERT_TRUE(
        ReadsExactly(*f.file, *f.bytes, pos, std::min<uint64_t>(3000, f.file->size() - pos)));
  }
  f.file->WillNeed(0, f.file->size());
  const ReadCache::Stats s = f.cache->stats();
  EXPECT_LE(s.peak_kept_bytes, o.memory_bytes);
  EXPECT_GE(s.peak_kept_bytes, o.memory_bytes - kBlock);
  EXPECT_LE(s.kept_bytes, o.memory_bytes);
}

TEST(ReadCacheTest, AnotherVersionDoesNotGetTheOldBytes) {
  auto probe = std::make_shared<Probe>();
  auto cache = ReadCache::Create(SmallOptions());
  auto old_bytes = std::make_shared<const std::vector<uint8_t>>(RandomBytes(10 * kBlock, 1));
  auto new_bytes = std::make_shared<const std::vector<uint8_t>>(RandomBytes(10 * kBlock, 2));
  const std::string name = "s3://b/vm/vda.full.data";
  auto old_file = cache->Wrap(std::make_unique<TestRemote>(old_bytes, name, "etag-1", probe));
  ASSERT_TRUE(ReadsExactly(*old_file, *old_bytes, 0, 10 * kBlock));
  auto new_file = cache->Wrap(std::make_unique<TestRemote>(new_bytes, name, "etag-2", probe));
  ASSERT_TRUE(ReadsExactly(*new_file, *new_bytes, 0, 10 * kBlock));
  ASSERT_TRUE(ReadsExactly(*old_file, *old_bytes, 0, 10 * kBlock));
  // The same name and version opened again is served from memory.
  auto again = cache->Wrap(std::make_unique<TestRemote>(new_bytes, name, "etag-2", probe));
  const uint64_t fetches = cache->stats().fetches;
  ASSERT_TRUE(ReadsExactly(*again, *new_bytes, 0, 10 * kBlock));
  EXPECT_EQ(cache->stats().fetches, fetches);
  EXPECT_EQ(fetches, 20u);
}

TEST(ReadCacheTest, FilesOutliveTheirCache) {
  Fixture f(40 * kBlock);
  for (uint64_t pos = 0; pos < 8 * kBlock; pos += 1024) {
    ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, pos, 1024));  // readahead queued and running
  }
  f.cache.reset();
  f.file->WillNeed(0, 40 * kBlock);  // ignored now
  for (uint64_t pos = 0; pos < 40 * kBlock; pos += 3000) {
    ASSERT_TRUE(ReadsExactly(*f.file, *f.bytes, pos, std::min<uint64_t>(3000, 40 * kBlock - pos)));
  }
}

TEST(ReadCacheTest, AFileClosedWithFetchesInFlightIsSafe) {
  Fixture f(40 * kBlock);
  f.probe->CloseGate();
  f.file->WillNeed(0, 40 * kBlock);
  ASSERT_TRUE(f.probe->WaitFor([](auto&, int waiting) { return waiting == 4; }));
  f.file.reset();  // the running fetches still hold the remote; the queued ones are dropped
  f.probe->OpenGate();
  f.cache.reset();
  EXPECT_EQ(f.probe->offsets().size(), 4u);  // only the fetches that had started
}

TEST(ReadCacheTest, DiskCacheServesANewRunWithoutFetches) {
  ScratchDir dir;
  const uint64_t size = 30 * kBlock + 99;
  auto bytes = std::make_shared<const std::vector<uint8_t>>(RandomBytes(size, 9));
  const std::string name = "s3://b/vm/vda.full.data";
  {
    auto disk = DiskCache::Open(dir.path(), 1 << 20);
    ASSERT_TRUE(disk.ok());
    ReadCacheOptions o = SmallOptions();
    o.disk = *disk;
    auto cache = ReadCache::Create(o);
    auto file =
        cache->Wrap(std::make_unique<TestRemote>(bytes, name, "v1", std::make_shared<Probe>()));
    for (uint64_t pos = 0; pos < size; pos += 1000) {
      ASSERT_TRUE(ReadsExactly(*file, *bytes, pos, std::min<uint64_t>(1000, size - pos)));
    }
    EXPECT_EQ(cache->stats().fetches, 31u);
  }
  auto disk = DiskCache::Open(dir.path(), 1 << 20);
  ASSERT_TRUE(disk.ok());
  ReadCacheOptions o = SmallOptions();
  o.disk = *disk;
  auto probe = std::make_shared<Probe>();
  auto cache = ReadCache::Create(o);
  auto file = cache->Wrap(std::make_unique<TestRemote>(bytes, name, "v1", probe));
  ASSERT_TRUE(ReadsExactly(*file, *bytes, 0, size));
  EXPECT_TRUE(probe->offsets().empty());
  EXPECT_EQ(cache->stats().fetches, 0u);
  EXPECT_EQ(cache->stats().disk_hits, 31u);
  // Another version of the file is not served from the disk.
  auto other = cache->Wrap(std::make_unique<TestRemote>(bytes, name, "v2", probe));
  ASSERT_TRUE(ReadsExactly(*other, *bytes, 0, kBlock));
  EXPECT_EQ(probe->offsets().size(), 1u);
}

TEST(ReadCacheTest, ACorruptDiskEntryIsFetchedAgain) {
  ScratchDir dir;
  const uint64_t size = 6 * kBlock;
  auto bytes = std::make_shared<const std::vector<uint8_t>>(RandomBytes(size, 4));
  auto open = [&](std::shared_ptr<Probe> probe) {
    auto disk = DiskCache::Open(dir.path(), 1 << 20);
    ReadCacheOptions o = SmallOptions();
    o.max_readahead = 0;
    o.disk = *disk;
    auto cache = ReadCache::Create(o);
    return std::make_pair(cache, cache->Wrap(std::make_unique<TestRemote>(bytes, "s3://b/x", "v1",
                                                                          std::move(probe))));
  };
  {
    auto [cache, file] = open(std::make_shared<Probe>());
    ASSERT_TRUE(ReadsExactly(*file, *bytes, 0, size));
  }
  // Flip a byte in the middle of every entry file: the content of each block.
  int damaged = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (!e.is_regular_file() || damaged++ == 1) continue;  // one entry is left intact
    int fd = ::open(e.path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const off_t at = static_cast<off_t>(e.file_size() - kBlock / 2);
    uint8_t byte;
    ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
    byte ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    ::close(fd);
  }
  ASSERT_EQ(damaged, 6);
  auto probe = std::make_shared<Probe>();
  auto [cache, file] = open(probe);
  ASSERT_TRUE(ReadsExactly(*file, *bytes, 0, size));
  EXPECT_EQ(cache->stats().disk_hits, 1u);
  EXPECT_EQ(probe->offsets().size(), 5u);
}

// Not run by default (it sleeps to simulate the network): run with
// --gtest_also_run_disabled_tests --gtest_filter='*Benchmark*'.
TEST(ReadCacheTest, DISABLED_BenchmarkSequentialRead) {
  const uint64_t size = uint64_t{512} << 20;
  auto bytes = std::make_shared<const std::vector<uint8_t>>(RandomBytes(size, 1));
  for (double stream_bytes_per_s : {0.0, 600.0 * (1 << 20)}) {
    for (unsigned threads : {1u, 4u}) {
      auto probe = std::make_shared<Probe>();
      probe->SetLatency(std::chrono::milliseconds(3), stream_bytes_per_s);
      ReadCacheOptions o;
      o.fetch_threads = threads;
      auto cache = ReadCache::Create(o);
      auto file = cache->Wrap(std::make_unique<TestRemote>(bytes, "s3://b/big", "v1", probe));
      std::vector<uint8_t> buf(1 << 20);
      const auto start = Clock::now();
      for (uint64_t pos = 0; pos < size; pos += buf.size())
        ASSERT_TRUE(file->ReadAt(pos, buf).ok());
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      std::printf(
          "3 ms per fetch, %s per stream, fetch_threads %u: %.0f MiB/s (%.2f s, %lu fetches)\n",
          stream_bytes_per_s > 0 ? "600 MiB/s" : "unlimited", threads, (size >> 20) / s, s,
          static_cast<unsigned long>(cache->stats().fetches));
    }
  }
}

}  // namespace
}  // namespace backupfs
