#include "stream/chunk_cache.h"

#include <atomic>

namespace backupfs {

uint64_t ChunkCache::NewOwnerId() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

std::shared_ptr<const DecodedChunk> ChunkCache::Get(uint64_t owner, uint64_t file_offset) {
  std::lock_guard lock(mu_);
  auto it = entries_.find({owner, file_offset});
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.pos);
  return it->second.chunk;
}

void ChunkCache::Put(uint64_t owner, uint64_t file_offset,
                     std::shared_ptr<const DecodedChunk> chunk) {
  std::lock_guard lock(mu_);
  const Key key{owner, file_offset};
  if (chunk->size > capacity_ || entries_.count(key)) return;
  // Insert into the map first: if that throws, the list holds no dangling key.
  Entry& e = entries_[key];
  lru_.push_front(key);
  bytes_ += chunk->size;
  e = Entry{std::move(chunk), lru_.begin()};
  while (bytes_ > capacity_) {
    auto victim = entries_.find(lru_.back());
    bytes_ -= victim->second.chunk->size;
    entries_.erase(victim);
    lru_.pop_back();
  }
}

uint64_t ChunkCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace backupfs
