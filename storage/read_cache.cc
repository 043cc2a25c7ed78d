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
// - Prefetch (readahead and WillNeed) is bounded: at most memory_bytes / 4 queued or being
//   fetched at once, and no sequential window wider than that, so fetching ahead never
//   evicts the blocks that readers are on.
// - Sequential detection (CachedFile): each wrapped file remembers the ends of its last few
//   reads. A read that starts within one block of such an end continues that stream (FUSE's
//   parallel readers deliver pieces slightly out of order); the stream's window of blocks
//   fetched ahead starts at 2 and doubles each time the reader enters a new block.
//
// Lock order: CachedFile::mu_, then Core::mu_, then Flight::mu_. No lock is held during a
// fetch or a disk cache call. Evicted blocks are dropped after Core::mu_ is released.
#include "storage/read_cache.h"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <list>
#include <memory>
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

// One block's bytes: fetched into a buffer of its own (not zero-filled first: a pass over
// 4 MiB that the fetch overwrites at once, on a host with 2 cores), or read from the disk.
class Block {
 public:
  explicit Block(size_t size)
      : fetched_(std::make_unique_for_overwrite<uint8_t[]>(size)), size_(size) {}
  explicit Block(std::string from_disk)
      : from_disk_(std::move(from_disk)), size_(from_disk_.size()) {}
  const uint8_t* data() const {
    return fetched_ ? fetched_.get() : reinterpret_cast<const uint8_t*>(from_disk_.data());
  }
  std::span<uint8_t> fetch_buffer() { return std::span(fetched_.get(), size_); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint8_t[]> fetched_;
  std::string from_disk_;
  size_t size_;
};

using BlockPtr = std::shared_ptr<const Block>;

struct BlockKey {
  std::string file;  // FileState::id
  uint64_t index = 0;
  bool operator==(const BlockKey&) const = default;
};

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const {
    return std::hash<std::string>()(k.file) ^ (k.index * 0x9e3779b97f4a7c15ull);
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
  FileState(std::shared_ptr<Core> c, std::unique_ptr<StoredFile> r, uint64_t bytes_per_block)
      : core(std::move(c)),
        remote(std::move(r)),
        id(remote->name() + '\n' + remote->version()),
        block_bytes(bytes_per_block),
        blocks((remote->size() + bytes_per_block - 1) / bytes_per_block) {}
  uint64_t BlockStart(uint64_t index) const { return index * block_bytes; }
  uint64_t BlockLength(uint64_t index) const {
    return std::min(block_bytes, remote->size() - BlockStart(index));
  }

  const std::shared_ptr<Core> core;
  const std::unique_ptr<StoredFile> remote;
  const std::string id;  // name + "\n" + version: a replaced file's blocks are other blocks
  const uint64_t block_bytes;
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
  // Around a fork (ForkGuard): the threads finish the fetches they run and stop, the queue
  // stays; Resume starts them again (in the parent, and in the child, which has none).
  void Pause() EXCLUDES(mu_);
  void Resume() EXCLUDES(mu_);

  const ReadCacheOptions& options() const { return options_; }
  // The widest sequential window, in blocks (0: no readahead, memory is too small).
  uint64_t max_window_blocks() const { return max_window_blocks_; }

  // Block `index` of `file`: kept, fetched by another thread (waits for it), or fetched here.
  Result<BlockPtr> Get(const std::shared_ptr<FileState>& file, uint64_t index) EXCLUDES(mu_);
  // Queues fetches of blocks [first, last] of `file` that are neither kept nor in flight,
  // within the prefetch bound. Returns the first block it had no room for (last + 1 when all
  // fit).
  uint64_t Prefetch(const std::shared_ptr<FileState>& file, uint64_t first, uint64_t last)
      EXCLUDES(mu_);
  ReadCache::Stats stats() const EXCLUDES(mu_);

 private:
  struct Kept {
    BlockPtr block;
    std::list<BlockKey>::iterator pos;
  };
  struct Slot {  // a fetch in flight
    std::shared_ptr<Flight> flight;
    bool started = false;
    uint64_t prefetch_bytes = 0;  // counted in prefetch_bytes_ (queued ahead of a reader)
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

  void WorkerLoop() EXCLUDES(mu_);
  // The next queued fetch this thread should run (marked started); false when stopping.
  bool NextTask(Task& task) EXCLUDES(mu_);
  BlockPtr LookupLocked(const BlockKey& key) REQUIRES(mu_);
  // Runs the fetch of a started flight: loads the block, keeps it, hands it to the waiters.
  Result<BlockPtr> Run(const FileState& file, const BlockKey& key,
                       const std::shared_ptr<Flight>& flight) EXCLUDES(mu_);
  // From the disk cache, else from the remote. Never throws.
  Result<Loaded> Load(const FileState& file, uint64_t index);
  Result<Loaded> LoadRemote(const FileState& file, uint64_t index);
  // Ends the key's flight (keeping `block` when given); returns the evicted blocks.
  std::vector<BlockPtr> FinishLocked(const BlockKey& key, const BlockPtr* block) REQUIRES(mu_);
  std::string DiskKey(const FileState& file, uint64_t index) const;

  const ReadCacheOptions options_;
  const uint64_t max_prefetch_bytes_;
  const uint64_t max_window_blocks_;

  mutable Mutex mu_;
  std::list<BlockKey> lru_ GUARDED_BY(mu_);  // most recent first
  std::unordered_map<BlockKey, Kept, BlockKeyHash> kept_ GUARDED_BY(mu_);
  std::unordered_map<BlockKey, Slot, BlockKeyHash> flights_ GUARDED_BY(mu_);
  std::deque<Task> queue_ GUARDED_BY(mu_);
  CondVar queue_cv_;  // a task was queued, or stopping
  std::vector<std::thread> threads_ GUARDED_BY(mu_);
  unsigned thread_count_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  bool paused_ GUARDED_BY(mu_) = false;
  uint64_t kept_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t peak_kept_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t prefetch_bytes_ GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> fetches_{0}, fetched_bytes_{0}, memory_hits_{0}, disk_hits_{0};
  std::atomic<uint64_t> shared_{0}, prefetched_{0};
};

Core::Core(const ReadCacheOptions& options)
    : options_(options),
      max_prefetch_bytes_(options.memory_bytes / 4),
      max_window_blocks_(std::min(options.max_readahead, options.memory_bytes / 4) /
                         options.block_bytes) {}

// A mount loads its saveset, and may fetch ahead while indexing it, before it goes to the
// background; only the thread that forks lives on in the child. So every Core's fetch threads
// stop before a fork and start again after it, in the parent and in the child.
class ForkGuard {
 public:
  static ForkGuard& Get() {
    static ForkGuard* guard = new ForkGuard;  // never destroyed: atfork handlers outlive main
    return *guard;
  }
  void Add(Core* core) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    cores_.insert(core);
  }
  void Remove(Core* core) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    cores_.erase(core);
  }

 private:
  ForkGuard() { pthread_atfork(&Prepare, &After, &After); }
  // mu_ is held from Prepare to After, across the fork: no Core comes or goes meanwhile.
  static void Prepare() BFS_NO_THREAD_SAFETY_ANALYSIS {
    ForkGuard& g = Get();
    g.mu_.Lock();
    for (Core* core : g.cores_) core->Pause();
  }
  static void After() BFS_NO_THREAD_SAFETY_ANALYSIS {
    ForkGuard& g = Get();
    for (Core* core : g.cores_) core->Resume();
    g.mu_.Unlock();
  }

  Mutex mu_;
  std::set<Core*> cores_ GUARDED_BY(mu_);
};

Core::~Core() {
  ForkGuard::Get().Remove(this);
  Shutdown();
}

void Core::Start(unsigned threads) {
  ForkGuard::Get().Add(this);
  MutexLock lock(mu_);
  thread_count_ = threads;
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
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
  for (unsigned i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { WorkerLoop(); });
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

BlockPtr Core::LookupLocked(const BlockKey& key) {
  auto it = kept_.find(key);
  if (it == kept_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.pos);
  return it->second.block;
}

Result<BlockPtr> Core::Get(const std::shared_ptr<FileState>& file, uint64_t index) {
  BlockKey key{file->id, index};
  std::shared_ptr<Flight> flight;
  bool lead = false;
  {
    MutexLock lock(mu_);
    if (BlockPtr hit = LookupLocked(key)) {
      ++memory_hits_;
      return hit;
    }
    auto it = flights_.find(key);
    if (it == flights_.end()) {
      it = flights_.emplace(key, Slot{std::make_shared<Flight>(), false, 0}).first;
    }
    flight = it->second.flight;
    lead = !it->second.started;  // a queued prefetch is run here rather than waited for
    it->second.started = true;
  }
  if (!lead) {
    ++shared_;
    return flight->Wait();
  }
  return Run(*file, key, flight);
}

uint64_t Core::Prefetch(const std::shared_ptr<FileState>& file, uint64_t first, uint64_t last) {
  last = std::min(last, file->blocks - 1);
  size_t queued = 0;
  MutexLock lock(mu_);
  if (stop_) return first;
  for (uint64_t i = first; i <= last && i < file->blocks; ++i) {
    BlockKey key{file->id, i};
    if (LookupLocked(key) || flights_.count(key)) continue;  // kept ones are refreshed
    const uint64_t len = file->BlockLength(i);
    if (prefetch_bytes_ + len > max_prefetch_bytes_) {
      if (queued) queue_cv_.NotifyAll();
      return i;
    }
    auto flight = std::make_shared<Flight>();
    flights_.emplace(key, Slot{flight, false, len});
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

void Core::WorkerLoop() {
  Task task;
  while (NextTask(task)) {
    (void)Run(*task.file, task.key, task.flight);  // errors reach the reader when it reads
    task = Task{};  // drops the file (maybe its last reference) before waiting again
  }
}

Result<BlockPtr> Core::Run(const FileState& file, const BlockKey& key,
                           const std::shared_ptr<Flight>& flight) {
  Result<Loaded> loaded = Load(file, key.index);
  Result<BlockPtr> result =
      loaded.ok() ? Result<BlockPtr>(loaded->block) : Result<BlockPtr>(loaded.status());
  std::vector<BlockPtr> evicted;  // dropped after unlocking
  {
    MutexLock lock(mu_);
    evicted = FinishLocked(key, result.ok() ? &*result : nullptr);
  }
  flight->Finish(result);
  if (loaded.ok() && loaded->from_remote && options_.disk) {
    const Block& b = *loaded->block;
    // The disk cache is an optimization: a full disk costs later runs a fetch, nothing more.
    (void)options_.disk->Put(DiskKey(file, key.index), std::span(b.data(), b.size()));
  }
  return result;
}

std::vector<BlockPtr> Core::FinishLocked(const BlockKey& key, const BlockPtr* block) {
  std::vector<BlockPtr> evicted;
  auto it = flights_.find(key);
  prefetch_bytes_ -= it->second.prefetch_bytes;
  flights_.erase(it);
  // A key is in flight or kept, never both: only its one leader keeps it.
  if (!block || (*block)->size() > options_.memory_bytes) return evicted;
  lru_.push_front(key);
  kept_.emplace(key, Kept{*block, lru_.begin()});
  kept_bytes_ += (*block)->size();
  while (kept_bytes_ > options_.memory_bytes) {
    auto victim = kept_.find(lru_.back());
    kept_bytes_ -= victim->second.block->size();
    evicted.push_back(std::move(victim->second.block));
    kept_.erase(victim);
    lru_.pop_back();
  }
  peak_kept_bytes_ = std::max(peak_kept_bytes_, kept_bytes_);
  return evicted;
}

std::string Core::DiskKey(const FileState& file, uint64_t index) const {
  // The block size is part of the key: a run with another size has other blocks.
  return "read-cache\n" + file.id + "\n" + std::to_string(options_.block_bytes) + "\n" +
         std::to_string(index);
}

Result<Core::Loaded> Core::Load(const FileState& file, uint64_t index) {
  try {
    if (options_.disk) {
      Result<std::optional<std::string>> got = options_.disk->Get(DiskKey(file, index));
      // A disk error or an entry of the wrong size is a miss: the remote has the bytes.
      if (got.ok() && *got && (*got)->size() == file.BlockLength(index)) {
        ++disk_hits_;
        return Loaded{std::make_shared<const Block>(std::move(**got)), false};
      }
    }
    return LoadRemote(file, index);
  } catch (const std::exception& e) {  // bad_alloc: fail this read, not the process
    return Status::IOError(file.remote->name() + ": reading block " + std::to_string(index) + ": " +
                           e.what());
  }
}

Result<Core::Loaded> Core::LoadRemote(const FileState& file, uint64_t index) {
  const uint64_t len = file.BlockLength(index);
  auto block = std::make_shared<Block>(len);
  ++fetches_;
  BFS_RETURN_IF_ERROR(file.remote->ReadAt(file.BlockStart(index), block->fetch_buffer()));
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
  MutexLock lock(mu_);
  s.kept_bytes = kept_bytes_;
  s.peak_kept_bytes = peak_kept_bytes_;
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
  struct Stream {
    uint64_t end = 0;         // where its latest read ended
    uint64_t window = 0;      // blocks fetched ahead of the reader (0: not sequential yet)
    uint64_t next_ahead = 0;  // first block not yet queued for it
    uint64_t used = 0;        // for replacing the least recently used stream
  };
  static constexpr size_t kStreams = 4;

  uint64_t BlockOf(uint64_t offset) const { return offset / state_->block_bytes; }
  // Sequential detection: notes the read of [offset, end) and fetches ahead of a stream.
  void NoteRead(uint64_t offset, uint64_t end) const EXCLUDES(mu_);
  Stream* FindStreamLocked(uint64_t offset) const REQUIRES(mu_);

  const std::shared_ptr<FileState> state_;
  mutable Mutex mu_;
  mutable std::array<Stream, kStreams> streams_ GUARDED_BY(mu_);
  mutable uint64_t clock_ GUARDED_BY(mu_) = 0;
};

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
  NoteRead(offset, end);
  Core& core = *state_->core;
  if (last > first) core.Prefetch(state_, first + 1, last);  // the rest in parallel
  for (uint64_t i = first; i <= last; ++i) {
    BFS_ASSIGN_OR_RETURN(BlockPtr block, core.Get(state_, i));
    if (block->size() != state_->BlockLength(i)) {  // never: fetches and disk hits are exact
      return Status::IOError(name() + ": block " + std::to_string(i) + " holds " +
                             std::to_string(block->size()) + " bytes instead of " +
                             std::to_string(state_->BlockLength(i)));
    }
    const uint64_t start = state_->BlockStart(i);
    const uint64_t from = std::max(offset, start);
    const uint64_t to = std::min(end, start + block->size());
    std::copy_n(block->data() + (from - start), to - from, out.data() + (from - offset));
  }
  return Status::Ok();
}

CachedFile::Stream* CachedFile::FindStreamLocked(uint64_t offset) const {
  const uint64_t slack = state_->block_bytes;  // pieces of FUSE's parallel readers reorder
  for (Stream& s : streams_) {
    if (s.used && offset + slack >= s.end && offset <= s.end + slack) return &s;
  }
  return nullptr;
}

void CachedFile::NoteRead(uint64_t offset, uint64_t end) const {
  MutexLock lock(mu_);
  ++clock_;
  Stream* s = FindStreamLocked(offset);
  if (!s) {  // a new stream, in place of the least recently used
    s = &*std::min_element(streams_.begin(), streams_.end(),
                           [](const Stream& a, const Stream& b) { return a.used < b.used; });
    *s = Stream{end, 0, BlockOf(end - 1) + 1, clock_};
    return;
  }
  s->used = clock_;
  if (end <= s->end) return;  // a piece that arrived late
  const Core& core = *state_->core;
  const bool new_block = s->window == 0 || BlockOf(end - 1) != BlockOf(s->end - 1);
  s->end = end;
  if (!new_block || core.max_window_blocks() == 0) return;
  s->window = std::min(std::max<uint64_t>(s->window * 2, 2), core.max_window_blocks());
  const uint64_t current = BlockOf(end - 1);
  const uint64_t target = std::min(current + s->window, state_->blocks - 1);
  const uint64_t from = std::max(s->next_ahead, current + 1);
  if (from <= target) s->next_ahead = state_->core->Prefetch(state_, from, target);
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
    return std::make_unique<CachedFile>(
        std::make_shared<FileState>(core_, std::move(remote), core_->options().block_bytes));
  }
  Stats stats() const override { return core_->stats(); }

 private:
  const std::shared_ptr<Core> core_;
};

}  // namespace

std::shared_ptr<ReadCache> ReadCache::Create(const ReadCacheOptions& options) {
  ReadCacheOptions o = options;
  o.block_bytes = std::max<uint64_t>(o.block_bytes, 1);
  auto core = std::make_shared<Core>(o);
  core->Start(std::max(1u, o.fetch_threads));
  return std::make_shared<ReadCacheImpl>(std::move(core));
}

}  // namespace backupfs
