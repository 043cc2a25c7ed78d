// How the cache is built:
//
// - Core: the kept blocks (an LRU over every wrapped file, keyed by file name + version +
//   block number), the fetches in flight, the prefetch queue and the fetch threads. Wrapped
//   files hold it by shared_ptr, so it outlives the ReadCache object; destroying that object
//   stops and joins the threads, after which reads still work (each fetching in its own
//   thread) and hints are ignored.
// - A fetch in flight is a Flight in `flights_`: either queued for the fetch threads (a
//   prefetch, not started) or started by whoever runs it. A reader that needs a queued block
//   runs the fetch itself instead of waiting behind the queue; a reader that needs a started
//   one waits for its result, an error included. A finished fetch leaves the table, so a
//   failed one is retried by the next read.
// - Memory: kept blocks and the buffers of running fetches together stay within memory_bytes
//   (a fetch makes room before it allocates). Whole blocks live in buffers mapped once and
//   reused (BufferPool), so that freed ones go back to the system rather than to malloc's
//   arenas, where they stayed past the bound.
// - Eviction: blocks fetched ahead and not read yet are evicted only after every block that
//   was read (a sequential stream's used blocks go first, not another file's blocks fetched
//   for a slower reader), and at most memory_bytes / 2 of them are protected so.
// - Prefetch (readahead and WillNeed) is bounded: at most memory_bytes / 4 queued or being
//   fetched at once, and no sequential window wider than that.
// - Sequential detection (CachedFile): each wrapped file remembers the ends of its last few
//   reads. A read that starts within one block of such an end continues that stream (FUSE's
//   parallel readers deliver pieces slightly out of order); the stream's window of blocks
//   fetched ahead starts at 2 and doubles each time the reader enters a new block, up to what
//   the reader reads in readahead_horizon_ms at its pace so far: a slow reader's blocks are
//   not fetched so far ahead that they wait long in memory.
// - Small reads (small_read_bytes) that no sequential stream makes fetch a range of twice
//   that size around them, kept like a block, when no block holding them is kept or being
//   fetched: opening a data file reads its header and its ends, not 4 MiB blocks.
//
// Lock order: CachedFile::mu_, then Core::mu_, then Flight::mu_; BufferPool::mu_ alone. No
// lock is held during a fetch or a disk cache call. Evicted blocks are dropped after
// Core::mu_ is released.
#include "storage/read_cache.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <list>
#include <memory>
#include <new>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "storage/disk_cache.h"

namespace backupfs {
namespace {

// Buffers of whole blocks, mapped once and reused: a fresh 4 MiB buffer costs a page fault per
// 4 KiB, and glibc keeps freed ones in its arenas, past the memory bound. A freed buffer is
// kept for reuse only while all the pool's buffers stay within the bound; the rest are unmapped.
class BufferPool {
 public:
  BufferPool(size_t buffer_bytes, uint64_t max_bytes)
      : buffer_bytes_(buffer_bytes),
        max_buffers_(std::max<uint64_t>(max_bytes / buffer_bytes, 1)) {}
  ~BufferPool() {
    MutexLock lock(mu_);
    for (uint8_t* p : free_) munmap(p, buffer_bytes_);
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  size_t buffer_bytes() const { return buffer_bytes_; }
  // Throws bad_alloc when no memory can be mapped (the fetch fails, not the process).
  uint8_t* Acquire() EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      ++outstanding_;
      if (!free_.empty()) {
        uint8_t* p = free_.back();
        free_.pop_back();
        return p;
      }
    }
    void* p =
        mmap(nullptr, buffer_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      MutexLock lock(mu_);
      --outstanding_;
      throw std::bad_alloc();
    }
    return static_cast<uint8_t*>(p);
  }
  void Release(uint8_t* p) EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      --outstanding_;
      if (outstanding_ + free_.size() < max_buffers_) {
        free_.push_back(p);
        return;
      }
    }
    munmap(p, buffer_bytes_);
  }

 private:
  const size_t buffer_bytes_;
  const uint64_t max_buffers_;
  Mutex mu_;
  std::vector<uint8_t*> free_ GUARDED_BY(mu_);
  uint64_t outstanding_ GUARDED_BY(mu_) = 0;
};

// One block's bytes: fetched into a buffer of its own (a whole block's from the pool; not
// zero-filled first: a pass over 4 MiB that the fetch overwrites at once, on a host with 2
// cores), or read from the disk.
class Block {
 public:
  Block(size_t size, const std::shared_ptr<BufferPool>& pool) : size_(size) {
    if (pool && size == pool->buffer_bytes()) {
      pooled_ = pool->Acquire();
      pool_ = pool;
    } else {
      fetched_ = std::make_unique_for_overwrite<uint8_t[]>(size);
    }
  }
  explicit Block(std::string from_disk)
      : from_disk_(std::move(from_disk)), size_(from_disk_.size()) {}
  ~Block() {
    if (pooled_) pool_->Release(pooled_);
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  const uint8_t* data() const {
    if (pooled_) return pooled_;
    return fetched_ ? fetched_.get() : reinterpret_cast<const uint8_t*>(from_disk_.data());
  }
  std::span<uint8_t> fetch_buffer() { return std::span(pooled_ ? pooled_ : fetched_.get(), size_); }
  size_t size() const { return size_; }

 private:
  std::shared_ptr<BufferPool> pool_;
  uint8_t* pooled_ = nullptr;
  std::unique_ptr<uint8_t[]> fetched_;
  std::string from_disk_;
  size_t size_;
};

using BlockPtr = std::shared_ptr<const Block>;

struct BlockKey {
  std::string file;  // FileState::id
  uint64_t index = 0;
  bool small = false;  // a range around a small read: index counts small_read_bytes units
  bool operator==(const BlockKey&) const = default;
};

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const {
    return std::hash<std::string>()(k.file) ^ ((k.index * 2 + k.small) * 0x9e3779b97f4a7c15ull);
  }
};

// One fetch's result, handed to every reader that waits for it.
class Flight {
 public:
  void Finish(Result<BlockPtr> result) EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      result_ = std::move(result);
      done_ = true;
    }
    cv_.NotifyAll();
  }
  Result<BlockPtr> Wait() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    while (!done_) cv_.Wait(mu_);
    return result_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  bool done_ GUARDED_BY(mu_) = false;
  Result<BlockPtr> result_ GUARDED_BY(mu_) = Status::Unavailable("fetch not finished");
};

class Core;

// What the wrapped file and its queued fetches share: the remote and how blocks are named.
struct FileState {
  FileState(std::shared_ptr<Core> c, std::unique_ptr<StoredFile> r, uint64_t bytes_per_block,
            uint64_t small_read_bytes)
      : core(std::move(c)),
        remote(std::move(r)),
        id(remote->name() + '\n' + remote->version()),
        block_bytes(bytes_per_block),
        small_bytes(small_read_bytes),
        blocks((remote->size() + bytes_per_block - 1) / bytes_per_block) {}
  uint64_t BlockStart(uint64_t index) const { return index * block_bytes; }
  uint64_t BlockLength(uint64_t index) const {
    return std::min(block_bytes, remote->size() - BlockStart(index));
  }
  // Where a key's bytes start in the file, and how many there are: a block, or the two small
  // units from a small one on (any small read within the first unit fits).
  uint64_t Start(const BlockKey& key) const {
    return key.small ? key.index * small_bytes : BlockStart(key.index);
  }
  uint64_t Length(const BlockKey& key) const {
    if (!key.small) return BlockLength(key.index);
    return std::min(2 * small_bytes, remote->size() - Start(key));
  }

  const std::shared_ptr<Core> core;
  const std::unique_ptr<StoredFile> remote;
  const std::string id;  // name + "\n" + version: a replaced file's blocks are other blocks
  const uint64_t block_bytes;
  const uint64_t small_bytes;  // 0: small reads fetch whole blocks too
  const uint64_t blocks;
  std::atomic<bool> closed{false};  // the wrapped file is gone: skip its queued prefetches
};

class Core {
 public:
  explicit Core(const ReadCacheOptions& options);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  void Start(unsigned threads) EXCLUDES(mu_);
  // Stops and joins the fetch threads and drops the queued prefetches. Idempotent.
  void Shutdown() EXCLUDES(mu_);
  // Around a fork (ReadCache::PauseAll): the threads finish the fetches they run and stop, the
  // queue stays (readers run what they need themselves meanwhile); Resume starts them again
  // (in the child, which has none, and in the parent when it goes on).
  void Pause() EXCLUDES(mu_);
  void Resume() EXCLUDES(mu_);

  const ReadCacheOptions& options() const { return options_; }
  // The widest sequential window, in blocks (0: no readahead, memory is too small).
  uint64_t max_window_blocks() const { return max_window_blocks_; }

  // Block `index` of `file`: kept, fetched by another thread (waits for it), or fetched here.
  Result<BlockPtr> Get(const std::shared_ptr<FileState>& file, uint64_t index) EXCLUDES(mu_);
  // For a small read at `offset`: block `index` when it is kept or being fetched, else the
  // small range around `offset` (kept, waited for or fetched here). Sets `*key` to which.
  Result<BlockPtr> GetSmall(const std::shared_ptr<FileState>& file, uint64_t index, uint64_t offset,
                            BlockKey* key) EXCLUDES(mu_);
  // Queues fetches of blocks [first, last] of `file` that are neither kept nor in flight,
  // within the prefetch bound. Returns the first block it had no room for (last + 1 when all
  // fit).
  uint64_t Prefetch(const std::shared_ptr<FileState>& file, uint64_t first, uint64_t last)
      EXCLUDES(mu_);
  ReadCache::Stats stats() const EXCLUDES(mu_);

 private:
  struct Kept {
    BlockPtr block;
    std::list<BlockKey>::iterator pos;  // in unread_ when unread, else in lru_
    bool unread = false;                // fetched ahead and not read since
  };
  struct Slot {  // a fetch in flight
    std::shared_ptr<Flight> flight;
    bool started = false;
    uint64_t prefetch_bytes = 0;  // counted in prefetch_bytes_ (queued ahead of a reader)
    bool wanted = false;          // a reader waits for it or runs it: kept as read
  };
  struct Task {
    std::shared_ptr<FileState> file;
    BlockKey key;
    std::shared_ptr<Flight> flight;
  };
  struct Loaded {
    BlockPtr block;
    bool from_remote = false;
  };
  // A reader's hold on a key: a kept block, or a flight to wait for or to run (`lead`).
  struct Claim {
    BlockPtr hit;
    std::shared_ptr<Flight> flight;
    bool lead = false;
  };

  void WorkerLoop() EXCLUDES(mu_);
  // A fetch thread, with every signal blocked: a program that takes SIGTERM or SIGINT in one
  // thread (sigwait, or a handler with the signal blocked elsewhere) must get it there, not in
  // a fetch thread that a cache opened before the program set its mask started.
  std::thread NewWorker();
  // The next queued fetch this thread should run (marked started); false when stopping.
  bool NextTask(Task& task) EXCLUDES(mu_);
  // A kept block, moved to the front of the read blocks (`read`) or of its own list.
  BlockPtr LookupLocked(const BlockKey& key, bool read) REQUIRES(mu_);
  // Kept or in flight: claims it. Neither: starts a flight that the caller leads when
  // `create`, else returns false.
  bool ClaimLocked(const BlockKey& key, bool create, Claim* claim) REQUIRES(mu_);
  // Waits for a claimed flight, or runs it.
  Result<BlockPtr> Complete(const FileState& file, const BlockKey& key, Claim claim) EXCLUDES(mu_);
  // Runs the fetch of a started flight: loads the block, keeps it, hands it to the waiters.
  Result<BlockPtr> Run(const FileState& file, const BlockKey& key,
                       const std::shared_ptr<Flight>& flight) EXCLUDES(mu_);
  // From the disk cache, else from the remote. Never throws.
  Result<Loaded> Load(const FileState& file, const BlockKey& key);
  Result<Loaded> LoadRemote(const FileState& file, const BlockKey& key);
  // Ends the key's flight (keeping `block` when given); returns the evicted blocks.
  std::vector<BlockPtr> FinishLocked(const BlockKey& key, const BlockPtr* block, uint64_t length)
      REQUIRES(mu_);
  // Evicts until the kept blocks and the running fetches fit the memory bound: read blocks
  // first (least recently used first), then blocks fetched ahead (oldest first).
  void EvictLocked(std::vector<BlockPtr>& evicted) REQUIRES(mu_);
  void NotePeakLocked() REQUIRES(mu_);
  std::string DiskKey(const FileState& file, uint64_t index) const;

  const ReadCacheOptions options_;
  const uint64_t max_prefetch_bytes_;
  const uint64_t max_unread_bytes_;
  const uint64_t max_window_blocks_;
  const std::shared_ptr<BufferPool> pool_;

  mutable Mutex mu_;
  std::list<BlockKey> lru_ GUARDED_BY(mu_);     // read blocks, most recent first
  std::list<BlockKey> unread_ GUARDED_BY(mu_);  // blocks fetched ahead, newest first
  std::unordered_map<BlockKey, Kept, BlockKeyHash> kept_ GUARDED_BY(mu_);
  std::unordered_map<BlockKey, Slot, BlockKeyHash> flights_ GUARDED_BY(mu_);
  std::deque<Task> queue_ GUARDED_BY(mu_);
  CondVar queue_cv_;  // a task was queued, or stopping
  std::vector<std::thread> threads_ GUARDED_BY(mu_);
  unsigned thread_count_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  bool paused_ GUARDED_BY(mu_) = false;
  uint64_t kept_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t unread_bytes_ GUARDED_BY(mu_) = 0;   // of kept_bytes_: in unread_
  uint64_t running_bytes_ GUARDED_BY(mu_) = 0;  // buffers of the fetches running
  uint64_t peak_kept_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t peak_held_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t prefetch_bytes_ GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> fetches_{0}, fetched_bytes_{0}, memory_hits_{0}, disk_hits_{0};
  std::atomic<uint64_t> shared_{0}, prefetched_{0}, small_fetches_{0}, stale_{0};
};

Core::Core(const ReadCacheOptions& options)
    : options_(options),
      max_prefetch_bytes_(options.memory_bytes / 4),
      max_unread_bytes_(options.memory_bytes / 2),
      max_window_blocks_(std::min(options.max_readahead, options.memory_bytes / 4) /
                         options.block_bytes),
      pool_(std::make_shared<BufferPool>(options.block_bytes, options.memory_bytes)) {}

// Every Core, for ReadCache::PauseAll / ResumeAll. Called explicitly around the one fork
// that goes on without exec (backupfs going to the background), never from fork handlers: a
// fork that runs a program (a subprocess) neither waits for the fetch threads nor finds a lock
// the child can never take.
class Registry {
 public:
  static Registry& Get() {
    static Registry* registry = new Registry;  // never destroyed: Cores may outlive main's end
    return *registry;
  }
  // Whether the caches are paused now: a Core created meanwhile starts its threads on Resume.
  bool Add(Core* core) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    cores_.insert(core);
    return paused_;
  }
  void Remove(Core* core) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    cores_.erase(core);
  }
  void Pause() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (paused_) return;
    paused_ = true;
    for (Core* core : cores_) core->Pause();
  }
  void Resume() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (!paused_) return;
    paused_ = false;
    for (Core* core : cores_) core->Resume();
  }

 private:
  Mutex mu_;
  std::set<Core*> cores_ GUARDED_BY(mu_);
  bool paused_ GUARDED_BY(mu_) = false;
};

Core::~Core() {
  Registry::Get().Remove(this);
  Shutdown();
}

void Core::Start(unsigned threads) {
  const bool paused = Registry::Get().Add(this);
  MutexLock lock(mu_);
  thread_count_ = threads;
  paused_ = paused;
  if (paused) return;  // Resume starts them
  for (unsigned i = 0; i < threads; ++i) threads_.push_back(NewWorker());
}

void Core::Pause() {
  std::vector<std::thread> threads;
  {
    MutexLock lock(mu_);
    paused_ = true;
    threads.swap(threads_);
  }
  queue_cv_.NotifyAll();
  for (std::thread& t : threads) t.join();
}

void Core::Resume() {
  MutexLock lock(mu_);
  paused_ = false;
  if (stop_) return;
  for (unsigned i = 0; i < thread_count_; ++i) threads_.push_back(NewWorker());
}

void Core::Shutdown() {
  std::vector<std::thread> threads;
  std::deque<Task> dropped;
  {
    MutexLock lock(mu_);
    stop_ = true;
    threads.swap(threads_);
    dropped.swap(queue_);
    for (const Task& t : dropped) {
      auto it = flights_.find(t.key);
      if (it == flights_.end() || it->second.flight != t.flight || it->second.started) continue;
      prefetch_bytes_ -= it->second.prefetch_bytes;
      flights_.erase(it);
    }
  }
  queue_cv_.NotifyAll();
  for (std::thread& t : threads) t.join();
  for (const Task& t : dropped) t.flight->Finish(Status::Cancelled("read cache closed"));
}

BlockPtr Core::LookupLocked(const BlockKey& key, bool read) {
  auto it = kept_.find(key);
  if (it == kept_.end()) return nullptr;
  Kept& k = it->second;
  if (k.unread && read) {  // its reader got here: an ordinary block from now on
    lru_.splice(lru_.begin(), unread_, k.pos);
    k.unread = false;
    unread_bytes_ -= k.block->size();
  } else {
    std::list<BlockKey>& list = k.unread ? unread_ : lru_;
    list.splice(list.begin(), list, k.pos);
  }
  return k.block;
}

bool Core::ClaimLocked(const BlockKey& key, bool create, Claim* claim) {
  if (BlockPtr hit = LookupLocked(key, /*read=*/true)) {
    claim->hit = std::move(hit);
    return true;
  }
  auto it = flights_.find(key);
  if (it == flights_.end()) {
    if (!create) return false;
    it = flights_.emplace(key, Slot{std::make_shared<Flight>(), false, 0, false}).first;
  }
  claim->flight = it->second.flight;
  claim->lead = !it->second.started;  // a queued prefetch is run here rather than waited for
  it->second.started = true;
  it->second.wanted = true;
  return true;
}

Result<BlockPtr> Core::Complete(const FileState& file, const BlockKey& key, Claim claim) {
  if (claim.hit) {
    ++memory_hits_;
    return std::move(claim.hit);
  }
  if (!claim.lead) {
    ++shared_;
    return claim.flight->Wait();
  }
  return Run(file, key, claim.flight);
}

Result<BlockPtr> Core::Get(const std::shared_ptr<FileState>& file, uint64_t index) {
  BlockKey key{file->id, index, false};
  Claim claim;
  {
    MutexLock lock(mu_);
    ClaimLocked(key, true, &claim);
  }
  return Complete(*file, key, std::move(claim));
}

Result<BlockPtr> Core::GetSmall(const std::shared_ptr<FileState>& file, uint64_t index,
                                uint64_t offset, BlockKey* key) {
  *key = BlockKey{file->id, index, false};
  Claim claim;
  {
    MutexLock lock(mu_);
    if (!ClaimLocked(*key, false, &claim)) {
      *key = BlockKey{file->id, offset / file->small_bytes, true};
      ClaimLocked(*key, true, &claim);
    }
  }
  return Complete(*file, *key, std::move(claim));
}

uint64_t Core::Prefetch(const std::shared_ptr<FileState>& file, uint64_t first, uint64_t last) {
  last = std::min(last, file->blocks - 1);
  size_t queued = 0;
  MutexLock lock(mu_);
  if (stop_) return first;
  for (uint64_t i = first; i <= last && i < file->blocks; ++i) {
    BlockKey key{file->id, i, false};
    // Kept ones are refreshed (an unread one stays unread).
    if (LookupLocked(key, /*read=*/false) || flights_.count(key)) continue;
    const uint64_t len = file->BlockLength(i);
    if (prefetch_bytes_ + len > max_prefetch_bytes_) {
      if (queued) queue_cv_.NotifyAll();
      return i;
    }
    auto flight = std::make_shared<Flight>();
    flights_.emplace(key, Slot{flight, false, len, false});
    queue_.push_back(Task{file, std::move(key), std::move(flight)});
    prefetch_bytes_ += len;
    ++prefetched_;
    ++queued;
  }
  if (queued) queue_cv_.NotifyAll();
  return last + 1;
}

bool Core::NextTask(Task& task) {
  MutexLock lock(mu_);
  while (true) {
    while (queue_.empty() && !stop_ && !paused_) queue_cv_.Wait(mu_);
    if (stop_ || paused_) return false;
    task = std::move(queue_.front());
    queue_.pop_front();
    auto it = flights_.find(task.key);
    if (it == flights_.end() || it->second.flight != task.flight || it->second.started) {
      continue;  // a reader took it over
    }
    if (task.file->closed) {  // nobody will read it: drop it (nobody waits for it either)
      prefetch_bytes_ -= it->second.prefetch_bytes;
      flights_.erase(it);
      continue;
    }
    it->second.started = true;
    return true;
  }
}

std::thread Core::NewWorker() {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  std::thread t([this] { WorkerLoop(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return t;
}

void Core::WorkerLoop() {
  Task task;
  while (NextTask(task)) {
    (void)Run(*task.file, task.key, task.flight);  // errors reach the reader when it reads
    task = Task{};  // drops the file (maybe its last reference) before waiting again
  }
}

void Core::NotePeakLocked() {
  peak_kept_bytes_ = std::max(peak_kept_bytes_, kept_bytes_);
  peak_held_bytes_ = std::max(peak_held_bytes_, kept_bytes_ + running_bytes_);
}

void Core::EvictLocked(std::vector<BlockPtr>& evicted) {
  while (kept_bytes_ + running_bytes_ > options_.memory_bytes && !kept_.empty()) {
    const bool stale = lru_.empty();
    std::list<BlockKey>& list = stale ? unread_ : lru_;
    auto victim = kept_.find(list.back());
    const uint64_t size = victim->second.block->size();
    kept_bytes_ -= size;
    if (stale) {
      unread_bytes_ -= size;
      ++stale_;
    }
    evicted.push_back(std::move(victim->second.block));
    kept_.erase(victim);
    list.pop_back();
  }
}

Result<BlockPtr> Core::Run(const FileState& file, const BlockKey& key,
                           const std::shared_ptr<Flight>& flight) {
  const uint64_t length = file.Length(key);
  std::vector<BlockPtr> evicted;  // dropped after unlocking
  {
    MutexLock lock(mu_);
    running_bytes_ += length;  // room for the buffer before it is allocated
    EvictLocked(evicted);
    NotePeakLocked();
  }
  evicted.clear();
  Result<Loaded> loaded = Load(file, key);
  Result<BlockPtr> result =
      loaded.ok() ? Result<BlockPtr>(loaded->block) : Result<BlockPtr>(loaded.status());
  {
    MutexLock lock(mu_);
    evicted = FinishLocked(key, result.ok() ? &*result : nullptr, length);
  }
  flight->Finish(result);
  if (loaded.ok() && loaded->from_remote && options_.disk && !key.small) {
    const Block& b = *loaded->block;
    // The disk cache is an optimization: a full disk costs later runs a fetch, nothing more.
    (void)options_.disk->Put(DiskKey(file, key.index), std::span(b.data(), b.size()));
  }
  return result;
}

std::vector<BlockPtr> Core::FinishLocked(const BlockKey& key, const BlockPtr* block,
                                         uint64_t length) {
  std::vector<BlockPtr> evicted;
  running_bytes_ -= length;
  auto it = flights_.find(key);
  const bool unread = it->second.prefetch_bytes > 0 && !it->second.wanted;
  prefetch_bytes_ -= it->second.prefetch_bytes;
  flights_.erase(it);
  // A key is in flight or kept, never both: only its one leader keeps it.
  if (!block || (*block)->size() > options_.memory_bytes) return evicted;
  const uint64_t size = (*block)->size();
  std::list<BlockKey>& list = unread ? unread_ : lru_;
  list.push_front(key);
  kept_.emplace(key, Kept{*block, list.begin(), unread});
  kept_bytes_ += size;
  if (unread) unread_bytes_ += size;
  // Blocks fetched ahead are protected up to a bound; past it the oldest become ordinary
  // blocks (the least recently used, evicted next): a reader that never came.
  while (unread_bytes_ > max_unread_bytes_) {
    Kept& oldest = kept_.at(unread_.back());
    lru_.splice(lru_.end(), unread_, oldest.pos);
    oldest.unread = false;
    unread_bytes_ -= oldest.block->size();
  }
  EvictLocked(evicted);
  NotePeakLocked();
  return evicted;
}

std::string Core::DiskKey(const FileState& file, uint64_t index) const {
  // The block size is part of the key: a run with another size has other blocks.
  return "read-cache\n" + file.id + "\n" + std::to_string(options_.block_bytes) + "\n" +
         std::to_string(index);
}

Result<Core::Loaded> Core::Load(const FileState& file, const BlockKey& key) {
  try {
    if (options_.disk && !key.small) {
      Result<std::optional<std::string>> got = options_.disk->Get(DiskKey(file, key.index));
      // A disk error or an entry of the wrong size is a miss: the remote has the bytes.
      if (got.ok() && *got && (*got)->size() == file.Length(key)) {
        ++disk_hits_;
        return Loaded{std::make_shared<const Block>(std::move(**got)), false};
      }
    }
    return LoadRemote(file, key);
  } catch (const std::exception& e) {  // bad_alloc: fail this read, not the process
    return Status::IOError(file.remote->name() + ": reading " +
                           (key.small ? "the range at " + std::to_string(file.Start(key))
                                      : "block " + std::to_string(key.index)) +
                           ": " + e.what());
  }
}

Result<Core::Loaded> Core::LoadRemote(const FileState& file, const BlockKey& key) {
  const uint64_t len = file.Length(key);
  auto block = std::make_shared<Block>(len, pool_);
  ++fetches_;
  if (key.small) ++small_fetches_;
  BFS_RETURN_IF_ERROR(file.remote->ReadAt(file.Start(key), block->fetch_buffer()));
  fetched_bytes_ += len;
  return Loaded{std::move(block), true};
}

ReadCache::Stats Core::stats() const {
  ReadCache::Stats s;
  s.fetches = fetches_.load();
  s.fetched_bytes = fetched_bytes_.load();
  s.memory_hits = memory_hits_.load();
  s.disk_hits = disk_hits_.load();
  s.shared = shared_.load();
  s.prefetched = prefetched_.load();
  s.small_fetches = small_fetches_.load();
  s.stale_prefetches = stale_.load();
  MutexLock lock(mu_);
  s.kept_bytes = kept_bytes_;
  s.peak_kept_bytes = peak_kept_bytes_;
  s.peak_held_bytes = peak_held_bytes_;
  return s;
}

// A remote file read through the cache.
class CachedFile final : public StoredFile {
 public:
  explicit CachedFile(std::shared_ptr<FileState> state) : state_(std::move(state)) {}
  ~CachedFile() override { state_->closed = true; }

  uint64_t size() const override { return state_->remote->size(); }
  const std::string& name() const override { return state_->remote->name(); }
  const std::string& version() const override { return state_->remote->version(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  void WillNeed(uint64_t offset, uint64_t length) const override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Stream {
    uint64_t start = 0;       // where it began
    Clock::time_point since;  // when
    uint64_t end = 0;         // where its latest read ended
    uint64_t window = 0;      // blocks fetched ahead of the reader (0: not sequential yet)
    uint64_t next_ahead = 0;  // first block not yet queued for it
    uint64_t used = 0;        // for replacing the least recently used stream
  };
  static constexpr size_t kStreams = 4;

  uint64_t BlockOf(uint64_t offset) const { return offset / state_->block_bytes; }
  // Sequential detection: notes the read of [offset, end) and fetches ahead of a stream.
  // Returns whether the read belongs to a sequential stream.
  bool NoteRead(uint64_t offset, uint64_t end) const EXCLUDES(mu_);
  Stream* FindStreamLocked(uint64_t offset) const REQUIRES(mu_);
  // The widest window for `s` now: what it reads in the horizon at its pace so far.
  uint64_t WindowCapLocked(const Stream& s, Clock::time_point now) const REQUIRES(mu_);
  // A small read that no block serves: copied from the range fetched around it.
  Status ReadSmall(uint64_t offset, std::span<uint8_t> out) const;
  Status CheckSize(const BlockKey& key, const Block& block) const;

  const std::shared_ptr<FileState> state_;
  mutable Mutex mu_;
  mutable std::array<Stream, kStreams> streams_ GUARDED_BY(mu_);
  mutable uint64_t clock_ GUARDED_BY(mu_) = 0;
};

Status CachedFile::CheckSize(const BlockKey& key, const Block& block) const {
  if (block.size() == state_->Length(key)) return Status::Ok();
  // Never: fetches and disk hits are exact.
  return Status::IOError(name() + ": the range at " + std::to_string(state_->Start(key)) +
                         " holds " + std::to_string(block.size()) + " bytes instead of " +
                         std::to_string(state_->Length(key)));
}

Status CachedFile::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  const uint64_t size = state_->remote->size();
  if (offset > size || out.size() > size - offset) {
    return Status::Corruption(name() + ": offset " + std::to_string(offset) + ": " +
                              std::to_string(out.size()) + " bytes past the end of the file (" +
                              std::to_string(size) + " bytes)");
  }
  if (out.empty()) return Status::Ok();
  const uint64_t end = offset + out.size();
  const uint64_t first = BlockOf(offset), last = BlockOf(end - 1);
  const bool sequential = NoteRead(offset, end);
  if (!sequential && first == last && out.size() <= state_->small_bytes) {
    return ReadSmall(offset, out);
  }
  Core& core = *state_->core;
  if (last > first) core.Prefetch(state_, first + 1, last);  // the rest in parallel
  for (uint64_t i = first; i <= last; ++i) {
    BFS_ASSIGN_OR_RETURN(BlockPtr block, core.Get(state_, i));
    BFS_RETURN_IF_ERROR(CheckSize(BlockKey{state_->id, i, false}, *block));
    const uint64_t start = state_->BlockStart(i);
    const uint64_t from = std::max(offset, start);
    const uint64_t to = std::min(end, start + block->size());
    std::copy_n(block->data() + (from - start), to - from, out.data() + (from - offset));
  }
  return Status::Ok();
}

Status CachedFile::ReadSmall(uint64_t offset, std::span<uint8_t> out) const {
  BlockKey key;
  BFS_ASSIGN_OR_RETURN(BlockPtr block,
                       state_->core->GetSmall(state_, BlockOf(offset), offset, &key));
  BFS_RETURN_IF_ERROR(CheckSize(key, *block));
  const uint64_t start = state_->Start(key);
  std::copy_n(block->data() + (offset - start), out.size(), out.data());
  return Status::Ok();
}

CachedFile::Stream* CachedFile::FindStreamLocked(uint64_t offset) const {
  const uint64_t slack = state_->block_bytes;  // pieces of FUSE's parallel readers reorder
  for (Stream& s : streams_) {
    if (s.used && offset + slack >= s.end && offset <= s.end + slack) return &s;
  }
  return nullptr;
}

uint64_t CachedFile::WindowCapLocked(const Stream& s, Clock::time_point now) const {
  const Core& core = *state_->core;
  const uint64_t horizon_ms = core.options().readahead_horizon_ms;
  // Too early to tell a pace (the first fetches' latency dominates it): no cap yet.
  constexpr auto kMinElapsed = std::chrono::milliseconds(50);
  const auto elapsed = now - s.since;
  if (horizon_ms == 0 || elapsed < kMinElapsed) return core.max_window_blocks();
  const double seconds = std::chrono::duration<double>(elapsed).count();
  const double ahead = static_cast<double>(s.end - s.start) / seconds * (horizon_ms / 1000.0);
  const uint64_t blocks = static_cast<uint64_t>(ahead / state_->block_bytes) + 1;
  return std::min(core.max_window_blocks(), std::max<uint64_t>(blocks, 2));
}

bool CachedFile::NoteRead(uint64_t offset, uint64_t end) const {
  MutexLock lock(mu_);
  ++clock_;
  const Clock::time_point now = Clock::now();
  Stream* s = FindStreamLocked(offset);
  if (!s) {  // a new stream, in place of the least recently used
    s = &*std::min_element(streams_.begin(), streams_.end(),
                           [](const Stream& a, const Stream& b) { return a.used < b.used; });
    *s = Stream{offset, now, end, 0, BlockOf(end - 1) + 1, clock_};
    return false;
  }
  s->used = clock_;
  if (end <= s->end) return s->window > 0;  // a piece that arrived late
  const Core& core = *state_->core;
  s->start = std::min(s->start, offset);
  // With small reads on, a stream is sequential once it has read two small ranges' worth:
  // a file's header read in pieces is not a stream to fetch blocks ahead for.
  if (s->window == 0 && state_->small_bytes && end - s->start < 2 * state_->small_bytes) {
    s->end = end;
    return false;
  }
  const bool new_block = s->window == 0 || BlockOf(end - 1) != BlockOf(s->end - 1);
  s->end = end;
  if (!new_block || core.max_window_blocks() == 0) return s->window > 0;
  s->window = std::min(std::max<uint64_t>(s->window * 2, 2), WindowCapLocked(*s, now));
  const uint64_t current = BlockOf(end - 1);
  const uint64_t target = std::min(current + s->window, state_->blocks - 1);
  const uint64_t from = std::max(s->next_ahead, current + 1);
  if (from <= target) s->next_ahead = state_->core->Prefetch(state_, from, target);
  return true;
}

void CachedFile::WillNeed(uint64_t offset, uint64_t length) const {
  const uint64_t size = state_->remote->size();
  if (offset >= size || length == 0) return;
  const uint64_t end = offset + std::min(length, size - offset);
  state_->core->Prefetch(state_, BlockOf(offset), BlockOf(end - 1));
}

class ReadCacheImpl final : public ReadCache {
 public:
  explicit ReadCacheImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~ReadCacheImpl() override { core_->Shutdown(); }  // wrapped files keep core_ alive

  std::unique_ptr<StoredFile> Wrap(std::unique_ptr<StoredFile> remote) override {
    const ReadCacheOptions& o = core_->options();
    // Small ranges only where they are much smaller than a block.
    const uint64_t small = o.small_read_bytes * 4 <= o.block_bytes ? o.small_read_bytes : 0;
    return std::make_unique<CachedFile>(
        std::make_shared<FileState>(core_, std::move(remote), o.block_bytes, small));
  }
  Stats stats() const override { return core_->stats(); }

 private:
  const std::shared_ptr<Core> core_;
};

}  // namespace

void ReadCache::PauseAll() { Registry::Get().Pause(); }

void ReadCache::ResumeAll() { Registry::Get().Resume(); }

std::shared_ptr<ReadCache> ReadCache::Create(const ReadCacheOptions& options) {
  ReadCacheOptions o = options;
  o.block_bytes = std::max<uint64_t>(o.block_bytes, 1);
  auto core = std::make_shared<Core>(o);
  core->Start(std::max(1u, o.fetch_threads));
  return std::make_shared<ReadCacheImpl>(std::move(core));
}

}  // namespace backupfs
