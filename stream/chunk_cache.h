// Decoded lz4 chunks, shared by every reader of a mount and bounded in bytes as a whole;
// the least recently used chunk is evicted first. Thread-safe.
//
// Concurrent requests for one chunk share one decode: the kernel sends several read requests
// that fall into the same 4 MiB chunk at once (readahead, a multithreaded FUSE loop), and each
// decoding it on its own cost 2-4 decodes per chunk. The first requester decodes; the others
// wait for its result, an error included.
//
// Memory: the kept chunks stay within `capacity_bytes` (counted by allocated buffer size). On
// top of that come the chunks in flight (one per decoding thread), chunks that readers still
// hold after eviction, and at most capacity_bytes / 8 of spare buffers: buffers of dropped
// chunks kept for the next decode, which would otherwise allocate and page-fault in fresh
// memory (4 MiB: 1024 faults) for every chunk.
//
// Lock order: mu_, then SparePool::mu_ (a chunk's deleter takes only the latter). Evicted chunks
// are dropped after mu_ is released, so that freeing them never holds up other lookups.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "stream/status.h"

namespace backupfs {

struct DecodedChunk {
  std::unique_ptr<uint8_t[]> bytes;
  size_t size = 0;      // bytes of the chunk
  size_t capacity = 0;  // bytes allocated (>= size: a reused buffer may be larger)
};

class ChunkCache {
 public:
  using ChunkPtr = std::shared_ptr<const DecodedChunk>;
  // Writes a chunk's bytes into `out` (exactly its size) and checks them; an error is returned
  // to every requester of the chunk. Called without any lock of the cache held.
  using DecodeFn = std::function<Status(std::span<uint8_t> out)>;

  struct Stats {
    uint64_t hits = 0;     // served from the kept chunks
    uint64_t decodes = 0;  // calls of a DecodeFn (failed ones included)
    uint64_t shared = 0;   // requests that waited for another requester's decode
    uint64_t reused = 0;   // decodes into a spare buffer instead of a new one
  };

  explicit ChunkCache(uint64_t capacity_bytes);
  ~ChunkCache();
  ChunkCache(const ChunkCache&) = delete;
  ChunkCache& operator=(const ChunkCache&) = delete;

  // A number that tells apart the readers sharing a cache (never reused in a process).
  static uint64_t NewOwnerId();

  // The chunk `size` bytes long at `file_offset` of reader `owner` (a NewOwnerId()): kept,
  // being decoded by another thread (then this call waits for it), or decoded here by `decode`.
  // A failed decode is not remembered: the next request decodes again.
  Result<ChunkPtr> GetOrDecode(uint64_t owner, uint64_t file_offset, size_t size,
                               const DecodeFn& decode);
  // The kept chunk, or nullptr (never waits, never decodes).
  ChunkPtr Get(uint64_t owner, uint64_t file_offset);

  // A buffer for a chunk of `size` bytes (a spare one when it fits), for Put.
  std::shared_ptr<DecodedChunk> NewChunk(size_t size);
  // Keeps `chunk` as (owner, file_offset) unless that key is kept or being decoded already:
  // for chunks decoded together (the blocks of one lz4 frame).
  void Put(uint64_t owner, uint64_t file_offset, ChunkPtr chunk);

  // A second budget of the same size, for memory that readers keep beside the chunks (decode
  // restart points of linked lz4 frames): TakeSideBytes(n) reserves n bytes if they fit,
  // GiveSideBytes returns them. Lock-free.
  bool TakeSideBytes(uint64_t n);
  void GiveSideBytes(uint64_t n);
  uint64_t side_bytes() const { return side_bytes_.load(std::memory_order_relaxed); }

  uint64_t capacity() const { return capacity_; }
  uint64_t bytes() const;        // of the kept chunks
  uint64_t spare_bytes() const;  // of the spare buffers
  Stats stats() const;

 private:
  struct Key {
    uint64_t owner;
    uint64_t offset;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.owner * 0x9e3779b97f4a7c15ull ^ k.offset);
    }
  };
  struct Entry {
    ChunkPtr chunk;
    std::list<Key>::iterator pos;
  };
  using Flight = std::shared_future<Result<ChunkPtr>>;
  class SparePool;
  class FlightGuard;

  ChunkPtr LookupLocked(const Key& key);
  // Runs `decode` for the key's flight (registered by the caller) and ends it: keeps the chunk,
  // then hands the result (or the exception) to the waiters through `promise`.
  Result<ChunkPtr> DecodeAsLeader(const Key& key, size_t size, const DecodeFn& decode,
                                  std::promise<Result<ChunkPtr>>& promise);
  // Keeps `chunk` (unless it alone exceeds the capacity) and ends the key's flight; returns the
  // evicted chunks, for the caller to drop after unlocking.
  std::vector<ChunkPtr> FinishLocked(const Key& key, const ChunkPtr* chunk);
  // Keeps `chunk` under `key` (not kept yet) and evicts down to the capacity.
  std::vector<ChunkPtr> KeepLocked(const Key& key, const ChunkPtr& chunk);

  const uint64_t capacity_;
  const std::shared_ptr<SparePool> spares_;  // shared with the deleters of live chunks
  mutable std::mutex mu_;
  std::list<Key> lru_;                                // most recent first; guarded by mu_
  std::unordered_map<Key, Entry, KeyHash> entries_;   // guarded by mu_
  std::unordered_map<Key, Flight, KeyHash> flights_;  // decodes in progress; guarded by mu_
  uint64_t bytes_ = 0;                                // guarded by mu_
  Stats stats_;                                       // guarded by mu_
  std::atomic<uint64_t> side_bytes_{0};
};

}  // namespace backupfs
