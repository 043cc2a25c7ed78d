// Decoded lz4 chunks, shared by every reader of a mount and bounded in bytes as a whole;
// the least recently used chunk is evicted first. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace backupfs {

struct DecodedChunk {
  std::unique_ptr<uint8_t[]> bytes;
  size_t size = 0;
};

class ChunkCache {
 public:
  explicit ChunkCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // A number that tells apart the readers sharing a cache (never reused in a process).
  static uint64_t NewOwnerId();

  // `owner` is a NewOwnerId() of the reader; `file_offset` the chunk in its file.
  std::shared_ptr<const DecodedChunk> Get(uint64_t owner, uint64_t file_offset);
  // Keeps `chunk` unless it alone exceeds the capacity; evicts to stay within it.
  void Put(uint64_t owner, uint64_t file_offset, std::shared_ptr<const DecodedChunk> chunk);
  uint64_t bytes() const;

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
    std::shared_ptr<const DecodedChunk> chunk;
    std::list<Key>::iterator pos;
  };

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<Key> lru_;                               // most recent first; guarded by mu_
  std::unordered_map<Key, Entry, KeyHash> entries_;  // guarded by mu_
  uint64_t bytes_ = 0;                               // guarded by mu_
};

}  // namespace backupfs
