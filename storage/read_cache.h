// Reads of remote files through a bounded local cache, with sequential reads detected and
// fetched ahead, several ranges in flight. Knows nothing of S3: it wraps any StoredFile whose
// ReadAt is slow (a ranged GET), and keys what it keeps by the file's name and version, so a
// replaced file never serves its old bytes as the new ones.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

class DiskCache;

struct ReadCacheOptions {
  uint64_t block_bytes = 4u << 20;     // the unit fetched and kept
  uint64_t memory_bytes = 256u << 20;  // all files together, fetches running included
  unsigned fetch_threads = 4;          // ranges in flight at once (readahead and misses)
  uint64_t max_readahead = 64u << 20;  // how far a sequential reader is fetched ahead
  // A sequential reader is fetched ahead by at most what it reads in this long (at the pace
  // it has read so far), at least two blocks: a reader that moves slowly through its file
  // (an incremental read beside the full backup's stream) gets no window its blocks would be
  // evicted from before it reaches them.
  uint64_t readahead_horizon_ms = 250;
  // Reads of at most this many bytes that are not part of a sequential stream (headers,
  // trailers, the ends a data file is identified by) fetch a range of twice this size around
  // them, not a whole block. 0, or more than a quarter of block_bytes: always whole blocks.
  uint64_t small_read_bytes = 64u << 10;
  // Blocks also kept on local disk (and found there by later runs); may be null.
  std::shared_ptr<DiskCache> disk;
};

// Shared by every file opened from one store: the memory bound and the fetch threads hold for
// all of them together. Thread-safe.
class ReadCache {
 public:
  static std::shared_ptr<ReadCache> Create(const ReadCacheOptions& options);

  // Around a fork after which the process goes on without exec (backupfs going to the
  // background: fuse_daemonize), where only the forking thread lives on in the child. PauseAll
  // lets every cache's fetch threads finish the fetch they run and stop, so none holds a lock
  // the child would wait for; ResumeAll starts them again, in the child (and in the parent
  // when it goes on). Call them from the thread that forks, with no other thread reading
  // through a cache. A fork that runs a program needs neither. Reads work while paused (each
  // runs its own fetch); caches created meanwhile start their threads on ResumeAll.
  static void PauseAll();
  static void ResumeAll();
  // PauseAll for its lifetime.
  class PausedForFork {
   public:
    PausedForFork() { PauseAll(); }
    ~PausedForFork() { ResumeAll(); }
    PausedForFork(const PausedForFork&) = delete;
    PausedForFork& operator=(const PausedForFork&) = delete;
  };

  virtual ~ReadCache() = default;
  // `remote` read through this cache. The result's ReadAt returns exactly the remote bytes;
  // a fetch that fails is reported to the read that needs it (and not kept).
  virtual std::unique_ptr<StoredFile> Wrap(std::unique_ptr<StoredFile> remote) = 0;
  // For tests and benchmarks. Counts are of blocks: a read spanning three blocks looks up three.
  struct Stats {
    uint64_t fetches = 0;        // remote ReadAt calls (failed ones included)
    uint64_t fetched_bytes = 0;  // bytes they returned
    uint64_t memory_hits = 0;    // block lookups of reads served from memory
    uint64_t disk_hits = 0;      // blocks loaded from the disk cache instead of the remote
    uint64_t shared = 0;         // block lookups of reads that waited for a fetch in flight
    uint64_t prefetched = 0;     // blocks queued ahead of a reader (readahead, WillNeed)
    uint64_t kept_bytes = 0;     // blocks kept in memory now (at most memory_bytes)
    uint64_t peak_kept_bytes = 0;
    // Kept blocks and the buffers of fetches running, together: at most memory_bytes (blocks
    // that readers still copy from after their eviction come on top, for the copy's length).
    uint64_t peak_held_bytes = 0;
    uint64_t small_fetches = 0;     // of `fetches`: ranges around small reads (small_read_bytes)
    uint64_t stale_prefetches = 0;  // blocks fetched ahead and evicted before any read
  };
  virtual Stats stats() const = 0;
};

}  // namespace backupfs
