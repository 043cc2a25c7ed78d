// Random access to the virtual-disk bytes of one data file through its chunk index.
//
// Open() loads the sidecar index `<file>.idx` when it exists and matches the data file (size,
// head and tail hashes, its own checksum, chunk bounds); otherwise the index is built by
// scanning frame headers. A stale or corrupt sidecar is never trusted: it is reported in
// index_problem() and replaced by a scan (in memory; the sidecar file is left as evidence).
//
// Thread-safe after Open(): any number of threads may call the read methods concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "stream/chunk_cache.h"
#include "stream/decode_ahead.h"
#include "stream/file.h"
#include "stream/index.h"
#include "stream/metadata.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

enum class IndexOrigin {
  kSidecar,         // loaded from <file>.idx (with our per-chunk checksums)
  kScanned,         // built by scanning; kept in memory only
  kScannedWritten,  // built by scanning and saved as <file>.idx
};

struct ReaderOptions {
  // Save a scanned index beside the data file when there is none (a failure, e.g. on
  // read-only storage, is not an error: the index stays in memory).
  bool write_missing_index = false;
  // Check each chunk's XXH3 before its bytes are first returned (an uncompressed chunk is then
  // read whole once; later reads of it within this reader go straight to the file).
  bool verify_checksums = true;
  // Decoded lz4 blocks (and chunks read whole) kept for reuse: `cache` when given (shared by many
  // readers, so the bound holds for all of them together), else a cache of `cache_bytes` of this
  // reader's own. Concurrent reads of one chunk share a single decode through it.
  std::shared_ptr<ChunkCache> cache;
  uint64_t cache_bytes = 128u << 20;
  // Sequential reads of lz4 frames that are decoded whole on their first read (virtnbdbackup's
  // linked frames: no XXH3 of ours) decode the next frame on a background thread of this
  // reader, one frame ahead, so that it overlaps the reads of the current one. Only frames
  // of at most a quarter of the cache are decoded ahead.
  bool decode_ahead = true;
};

class StreamReader {
 public:
  // Data file `name` of `storage`, whose `.idx` sidecar is looked for beside it.
  static Result<std::unique_ptr<StreamReader>> Open(Storage& storage, std::string_view name,
                                                    const ReaderOptions& options = {});
  // A data file in a local directory.
  static Result<std::unique_ptr<StreamReader>> Open(const std::string& path,
                                                    const ReaderOptions& options = {});
  // Waits for a decode-ahead in progress (at most one frame's decode) and joins its thread.
  ~StreamReader();
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  const std::string& path() const { return source_->name(); }
  const StreamMetadata& meta() const { return meta_; }
  const StreamIndex& index() const { return index_; }
  IndexOrigin index_origin() const { return origin_; }
  // Why a sidecar index was not used ("" when it was, or when there was none).
  const std::string& index_problem() const { return index_problem_; }

  // Fills `out` with the disk bytes at `offset`. Ranges no frame covers read as zeros (in an
  // incremental file they are "unchanged": callers that merge a chain use index() instead).
  // Corruption (a failed checksum, a bad lz4 frame) names the file and offset.
  Status Read(uint64_t offset, std::span<uint8_t> out);

  // Reads `out.size()` bytes at `offset_in_chunk` of one chunk of index().
  Status ReadChunk(const Chunk& chunk, uint64_t offset_in_chunk, std::span<uint8_t> out);

  // Reads and checks one whole chunk: its XXH3 when it has one, lz4's own checksums.
  Status VerifyChunk(const Chunk& chunk);

  // True when a data chunk's bytes can be served straight from the file (splice): stored
  // uncompressed and not to be verified on this read.
  bool ServesRaw(const Chunk& chunk) const {
    return !chunk.compressed && !(options_.verify_checksums && chunk.has_checksum);
  }
  // The local file descriptor for splice and fadvise; -1 when the file is not local.
  int fd() const { return source_->fd(); }
  const StoredFile& file() const { return *source_; }

 private:
  StreamReader(std::unique_ptr<StoredFile> source, const ReaderOptions& options)
      : source_(std::move(source)), options_(options) {}
  Status LoadIndex(Storage& storage, const std::string& idx_name);
  Result<std::shared_ptr<const DecodedChunk>> Decode(const Chunk& chunk);

  // Block-level reads of lz4 chunks (reader_lz4.cc). A chunk's block map is found on its
  // first read: from the block headers alone for chunks our writer made (they carry our XXH3,
  // and LZ4F_compressFrame fills every block but the last), else by decoding the whole frame
  // once, which learns every block's true place, checks lz4's checksums and, for linked
  // frames, keeps decode restart points. Chunks that cannot be read by block (one block, no
  // block checksums to verify with, odd layouts) are read whole as before.
  struct BlockMap;
  using BlockMapPtr = std::shared_ptr<const BlockMap>;
  Status ReadCompressed(const Chunk& chunk, uint64_t offset_in_chunk, std::span<uint8_t> out);
  Result<BlockMapPtr> GetBlockMap(const Chunk& chunk);
  Result<BlockMapPtr> BuildBlockMap(const Chunk& chunk);
  Result<BlockMapPtr> LearnBlockMap(const Chunk& chunk);
  // A frame that cannot be split decoded whole into one buffer (`stored`: all of it), kept.
  Result<BlockMapPtr> LearnWhole(const Chunk& chunk, std::span<const uint8_t> stored);
  // Restart points for a linked frame decoded whole into `decoded` (one buffer per block, every
  // one but the last at least 64 KiB; `hashes`: the XXH3 of each), from `stored`: a sparse
  // window for each block whose matches read little of the 64 KiB before it, else the
  // compressed window every few blocks; within the cache's side budget (blocks past it get none).
  Status KeepRestartPoints(const Chunk& chunk,
                           const std::vector<std::shared_ptr<DecodedChunk>>& decoded,
                           std::span<const uint8_t> stored, std::vector<uint64_t> hashes,
                           BlockMap& map);
  // Corruption unless block i, decoded alone into `content`, hashes as the whole decode did.
  Status CheckLoneBlock(const Chunk& chunk, const BlockMap& map, size_t i,
                        std::span<const uint8_t> content) const;
  Result<ChunkCache::ChunkPtr> GetBlock(const Chunk& chunk, const BlockMap& map, size_t i);
  Status DecodeBlock(const Chunk& chunk, const BlockMap& map, size_t i, std::span<uint8_t> out);
  // The content just before block i of a linked frame (empty for the first block), decoding
  // from the nearest restart point; `keep` holds the buffers it points into.
  Result<std::span<const uint8_t>> BlockDictionary(const Chunk& chunk, const BlockMap& map,
                                                   size_t i,
                                                   std::vector<ChunkCache::ChunkPtr>& keep);
  Result<std::span<const uint8_t>> ReadStoredBlock(const Chunk& chunk, const BlockMap& map,
                                                   size_t i, std::span<uint8_t> buf);
  // Reads (and decodes) a whole chunk into out (out.size() == chunk.length), checking it.
  Status ReadWholeChunk(const Chunk& chunk, std::span<uint8_t> out);
  Status ReadAndHash(const Chunk& chunk, std::span<uint8_t> out);
  std::string Where(const Chunk& chunk) const;

  std::unique_ptr<StoredFile> source_;
  const ReaderOptions options_;
  StreamMetadata meta_;
  uint64_t payload_begin_ = 0;
  StreamIndex index_;
  IndexOrigin origin_ = IndexOrigin::kScanned;
  std::string index_problem_;

  std::shared_ptr<ChunkCache> cache_;
  const uint64_t cache_owner_ = ChunkCache::NewOwnerId();
  // Uncompressed chunks whose checksum passed once: later reads of them (a 128 KiB request
  // would otherwise read and hash its whole 1 MiB chunk every time) go straight to the file,
  // which a saveset never changes. One flag per index_.chunks entry; set after a success.
  std::unique_ptr<std::atomic<bool>[]> verified_;
  std::atomic<bool>* VerifiedFlag(const Chunk& chunk);

  // One per index_.chunks entry: the chunk's block map, built once, immutable after.
  struct BlockMapSlot {
    Mutex mu;  // held while the map is built: concurrent first reads share one build
    BlockMapPtr map GUARDED_BY(mu);
  };
  std::unique_ptr<BlockMapSlot[]> block_maps_;
  size_t ChunkNumber(const Chunk& chunk) const;  // index_.chunks.size() when not one of them

  // Decode-ahead (ReaderOptions::decode_ahead): a read of a compressed chunk that starts near
  // where the previous read ended (a sequential pattern) queues the whole decode of the next
  // chunk, once per chunk, when that one is learnt by a whole decode. The background decode
  // builds the chunk's block map in its slot (under slot.mu): a read of that chunk meanwhile
  // waits for it, as it would for another FUSE thread's build, and a failure is not remembered
  // (the read that needs the chunk decodes it again and reports the error).
  void MaybeDecodeAhead(const Chunk& chunk, uint64_t offset_in_chunk, size_t size);
  std::atomic<uint64_t> last_read_end_{0};             // disk offset; relaxed: a heuristic
  std::unique_ptr<std::atomic<bool>[]> ahead_queued_;  // one per index_.chunks entry
  std::unique_ptr<DecodeAhead> ahead_;  // destroyed first (~StreamReader), before what it reads
};

}  // namespace backupfs
