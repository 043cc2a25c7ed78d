#include "stream/chunk_cache.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <utility>

namespace backupfs {

// Buffers of dropped chunks, handed to the next decode of a chunk that fits. Shared with the
// deleter of every live chunk, so it outlives the cache when readers still hold chunks.
class ChunkCache::SparePool {
 public:
  explicit SparePool(uint64_t limit_bytes) : limit_(limit_bytes) { spares_.reserve(kMaxSpares); }

  // A chunk with a buffer of at least `size` bytes: the smallest spare that fits and wastes at
  // most half of itself, else a new one. The bytes are not initialized (the decoder writes all).
  DecodedChunk Take(size_t size) {
    {
      std::lock_guard lock(mu_);
      auto best = spares_.end();
      for (auto it = spares_.begin(); it != spares_.end(); ++it) {
        if (it->capacity >= size && it->capacity / 2 <= size &&
            (best == spares_.end() || it->capacity < best->capacity)) {
          best = it;
        }
      }
      if (best != spares_.end()) {
        DecodedChunk c = std::move(*best);
        spares_.erase(best);
        bytes_ -= c.capacity;
        ++reused_;
        c.size = size;
        return c;
      }
    }
    DecodedChunk c;
    c.bytes.reset(new uint8_t[size]);
    c.size = c.capacity = size;
    return c;
  }

  // Keeps `c`'s buffer, dropping the oldest spares to stay within the limits. noexcept: runs in
  // shared_ptr deleters (spares_ never grows past the capacity reserved up front).
  void Give(DecodedChunk&& c) noexcept {
    if (!c.bytes || c.capacity > limit_) return;  // c frees it
    DecodedChunk dropped[kMaxSpares];             // freed after unlocking
    size_t n = 0;
    std::lock_guard lock(mu_);
    while (!spares_.empty() && (spares_.size() == kMaxSpares || bytes_ + c.capacity > limit_)) {
      bytes_ -= spares_.front().capacity;
      dropped[n++] = std::move(spares_.front());
      spares_.erase(spares_.begin());
    }
    bytes_ += c.capacity;
    spares_.push_back(std::move(c));
  }

  uint64_t bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
  }
  uint64_t reused() const {
    std::lock_guard lock(mu_);
    return reused_;
  }

 private:
  // A few suffice: a sequential read drops about one chunk per decode.
  static constexpr size_t kMaxSpares = 8;
  const uint64_t limit_;
  mutable std::mutex mu_;
  std::vector<DecodedChunk> spares_;  // oldest first; guarded by mu_
  uint64_t bytes_ = 0;                // guarded by mu_
  uint64_t reused_ = 0;               // guarded by mu_
};

namespace {

// A chunk whose buffer goes back to `pool` when its last reference drops.
template <typename Pool>
std::shared_ptr<DecodedChunk> NewChunk(const std::shared_ptr<Pool>& pool, size_t size) {
  auto chunk = std::make_unique<DecodedChunk>(pool->Take(size));
  return std::shared_ptr<DecodedChunk>(chunk.release(), [pool](DecodedChunk* c) {
    pool->Give(std::move(*c));
    delete c;
  });
}

}  // namespace

ChunkCache::ChunkCache(uint64_t capacity_bytes)
    : capacity_(capacity_bytes), spares_(std::make_shared<SparePool>(capacity_bytes / 8)) {}

ChunkCache::~ChunkCache() = default;  // here, where SparePool is complete

uint64_t ChunkCache::NewOwnerId() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

ChunkCache::ChunkPtr ChunkCache::LookupLocked(const Key& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.pos);
  ++stats_.hits;
  return it->second.chunk;
}

ChunkCache::ChunkPtr ChunkCache::Get(uint64_t owner, uint64_t file_offset) {
  std::lock_guard lock(mu_);
  return LookupLocked({owner, file_offset});
}

Result<ChunkCache::ChunkPtr> ChunkCache::GetOrDecode(uint64_t owner, uint64_t file_offset,
                                                     size_t size, const DecodeFn& decode) {
  const Key key{owner, file_offset};
  std::unique_lock lock(mu_);
  if (ChunkPtr hit = LookupLocked(key)) return hit;
  if (auto it = flights_.find(key); it != flights_.end()) {
    Flight flight = it->second;
    ++stats_.shared;
    lock.unlock();
    return flight.get();  // the leader always sets it, an exception included
  }
  std::promise<Result<ChunkPtr>> promise;
  flights_.emplace(key, promise.get_future().share());
  ++stats_.decodes;
  lock.unlock();
  return DecodeAsLeader(key, size, decode, promise);
}

Result<ChunkCache::ChunkPtr> ChunkCache::DecodeAsLeader(const Key& key, size_t size,
                                                        const DecodeFn& decode,
                                                        std::promise<Result<ChunkPtr>>& promise) {
  std::vector<ChunkPtr> evicted;  // dropped after unlocking (their deleters lock the pool)
  Result<ChunkPtr> result = Status::IOError("unreachable");
  try {
    std::shared_ptr<DecodedChunk> chunk = backupfs::NewChunk(spares_, size);
    Status s = decode(std::span(chunk->bytes.get(), size));
    result = s.ok() ? Result<ChunkPtr>(std::move(chunk)) : Result<ChunkPtr>(std::move(s));
    {
      std::lock_guard lock(mu_);
      evicted = FinishLocked(key, result.ok() ? &*result : nullptr);
    }
    promise.set_value(result);  // the last statement that can throw before the catch
  } catch (...) {
    // bad_alloc, say: the waiters get the same exception instead of waiting forever.
    std::lock_guard lock(mu_);
    flights_.erase(key);
    promise.set_exception(std::current_exception());
    throw;
  }
  return result;
}

std::vector<ChunkCache::ChunkPtr> ChunkCache::FinishLocked(const Key& key, const ChunkPtr* chunk) {
  flights_.erase(key);
  std::vector<ChunkPtr> evicted;
  // A key is in flight or kept, never both: only its one leader inserts it (or Put).
  if (!chunk || (*chunk)->capacity > capacity_ || entries_.count(key)) return evicted;
  return KeepLocked(key, *chunk);
}

std::vector<ChunkCache::ChunkPtr> ChunkCache::KeepLocked(const Key& key, const ChunkPtr& chunk) {
  std::vector<ChunkPtr> evicted;
  lru_.push_front(key);
  try {
    entries_.emplace(key, Entry{chunk, lru_.begin()});
  } catch (...) {
    lru_.pop_front();  // the list and the map must name the same keys
    throw;
  }
  bytes_ += chunk->capacity;
  while (bytes_ > capacity_) {
    auto victim = entries_.find(lru_.back());
    bytes_ -= victim->second.chunk->capacity;
    evicted.push_back(std::move(victim->second.chunk));
    entries_.erase(victim);
    lru_.pop_back();
  }
  return evicted;
}

std::shared_ptr<DecodedChunk> ChunkCache::NewChunk(size_t size) {
  return backupfs::NewChunk(spares_, size);
}

void ChunkCache::Put(uint64_t owner, uint64_t file_offset, ChunkPtr chunk) {
  const Key key{owner, file_offset};
  std::vector<ChunkPtr> evicted;  // dropped after unlocking
  std::lock_guard lock(mu_);
  if (!chunk || chunk->capacity > capacity_ || entries_.count(key) || flights_.count(key)) return;
  evicted = KeepLocked(key, chunk);
}

bool ChunkCache::TakeSideBytes(uint64_t n) {
  uint64_t cur = side_bytes_.load(std::memory_order_relaxed);
  do {
    if (n > capacity_ - std::min(cur, capacity_)) return false;
  } while (!side_bytes_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
  return true;
}

void ChunkCache::GiveSideBytes(uint64_t n) { side_bytes_.fetch_sub(n, std::memory_order_relaxed); }

uint64_t ChunkCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

uint64_t ChunkCache::spare_bytes() const { return spares_->bytes(); }

ChunkCache::Stats ChunkCache::stats() const {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.reused = spares_->reused();
  return s;
}

}  // namespace backupfs
