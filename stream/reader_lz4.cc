// Block-level reads of lz4 chunks: a read decodes the 64 KiB blocks it touches, not the frame.
//
// Checks, with -o verify on or off (lz4 data is always checked, as before): a block read alone
// is checked against lz4's block checksum (xxh32 of its stored bytes) and must decode to
// exactly its size; a frame learnt by a whole decode is checked against its content checksum
// (and our XXH3 when it has one) before any of its blocks is returned. Chunks whose blocks
// carry no checksum, and single-block chunks, are read whole, checked by our XXH3 or lz4's.
#include <lz4.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>

#include "stream/checksum.h"
#include "stream/lz4_blocks.h"
#include "stream/lz4_chunk.h"
#include "stream/reader.h"
#include "stream/xxh3.h"

namespace backupfs {
namespace {

// A linked frame keeps a restart point (the compressed 64 KiB before a block) at every
// kRestartEvery-th block: a random read then decodes at most kRestartEvery blocks.
constexpr size_t kRestartEvery = 4;
constexpr size_t kWindow = 64 * 1024;
// A block gets a sparse window (see BlockMap) when it costs at most this much; a compressed
// whole window (about half of 64 KiB for data that lz4 halves) is kept every kRestartEvery-th
// block otherwise.
constexpr size_t kSparseMax = 8 * 1024;

// A per-thread buffer that only grows (block-sized: at most 4 MiB).
std::span<uint8_t> Scratch(std::unique_ptr<uint8_t[]>& bytes, size_t& capacity, size_t size) {
  if (size > capacity) {
    bytes.reset();
    bytes.reset(new uint8_t[size]);
    capacity = size;
  }
  return {bytes.get(), size};
}

// XXH3 of bytes given in pieces (stream/xxh3.h: the CPU-dispatched update).
class Xxh3Stream {
 public:
  Xxh3Stream() : state_(XXH3_createState(), &XXH3_freeState) {
    if (!state_) throw std::bad_alloc();
    XXH3_64bits_reset(state_.get());
  }
  void Update(std::span<const uint8_t> bytes) {
    XXH3_64bits_update(state_.get(), bytes.data(), bytes.size());
  }
  uint64_t Digest() { return XXH3_64bits_digest(state_.get()); }

 private:
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state_;
};

// `content` as one raw lz4 block, in a buffer of its size.
std::shared_ptr<const Lz4Bytes> CompressBlock(std::span<const uint8_t> content) {
  thread_local Lz4Bytes buf;
  buf.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(content.size()))));
  // A high acceleration: restart points are made during a sequential first read; they need to
  // be small, not smallest.
  constexpr int kAcceleration = 8;
  const int n = LZ4_compress_fast(
      reinterpret_cast<const char*>(content.data()), reinterpret_cast<char*>(buf.data()),
      static_cast<int>(content.size()), static_cast<int>(buf.size()), kAcceleration);
  return std::make_shared<const Lz4Bytes>(buf.begin(), buf.begin() + n);
}

}  // namespace

struct StreamReader::BlockMap {
  bool whole = false;  // read the chunk whole (the map has no blocks)
  Lz4FrameLayout layout;
  // Linked frames: restart[i], when set, is the lz4-compressed content before block i.
  std::vector<std::shared_ptr<const Lz4Bytes>> restart;
  // Linked frames: block i's sparse window, when sparse_first[i] < sparse_first[i + 1], is
  // ranges [sparse_first[i], sparse_first[i + 1]) of `sparse`: the only bytes of the 64 KiB
  // before block i that its matches read (Lz4WindowReferences), copied from a checked decode.
  // A block whose matches read nothing before it (and a raw one) has an empty window.
  struct SparseRange {
    WindowRange range;
    uint32_t at = 0;  // of its bytes in sparse_bytes
  };
  std::vector<uint32_t> sparse_first;  // blocks.size() + 1 entries, or none
  std::vector<bool> has_sparse;        // block i can be decoded from its sparse window
  std::vector<SparseRange> sparse;
  Lz4Bytes sparse_bytes;
  // Linked frames: XXH3 of every block's content from the checked whole decode; a block
  // decoded alone must match it before it is returned.
  std::vector<uint64_t> content_hash;
  uint64_t restart_bytes = 0;  // taken from cache's side budget, given back on destruction
  std::shared_ptr<ChunkCache> cache;

  // Blocks whose stored bytes passed their lz4 block checksum once: a later read of the block
  // (after the cache dropped its content) skips the XXH32, 11% of the daemon's CPU in random
  // reads, as reads of a verified uncompressed chunk skip its XXH3: a saveset never changes.
  // (A block decoded alone is still compared with content_hash every time: which neighbour or
  // window it was decoded from may differ from one read to the next.)
  std::atomic<bool>& Checked(size_t i) const {
    std::call_once(checked_once_,
                   [this] { checked_.reset(new std::atomic<bool>[layout.blocks.size()]()); });
    return checked_[i];
  }

 private:
  mutable std::once_flag checked_once_;
  mutable std::unique_ptr<std::atomic<bool>[]> checked_;

 public:
  ~BlockMap() {
    if (cache) cache->GiveSideBytes(restart_bytes);
  }
  uint64_t Key(const Chunk& chunk, size_t i) const {
    return chunk.file_offset + layout.blocks[i].stored_offset;
  }
};

void StreamReader::MaybeDecodeAhead(const Chunk& chunk, uint64_t offset_in_chunk, size_t size) {
  // The kernel's readahead (up to a few MiB) and several FUSE threads reorder a sequential
  // reader's requests a little; a random reader lands this near the previous read rarely.
  constexpr uint64_t kNear = 4u << 20;
  const uint64_t pos = chunk.offset + offset_in_chunk;
  const uint64_t prev = last_read_end_.exchange(pos + size, std::memory_order_relaxed);
  if (pos + kNear < prev || pos > prev + kNear) return;
  const size_t next = ChunkNumber(chunk) + 1;
  if (next >= index_.chunks.size()) return;
  const Chunk& c = index_.chunks[next];
  // Only chunks learnt by a whole decode (see BuildBlockMap), that fit the cache four times.
  if (!c.compressed || c.has_checksum || c.length > cache_->capacity() / 4) return;
  if (ahead_queued_[next].exchange(true, std::memory_order_relaxed)) return;
  ahead_->Request(next);
}

Status StreamReader::ReadCompressed(const Chunk& chunk, uint64_t offset_in_chunk,
                                    std::span<uint8_t> out) {
  if (ahead_) MaybeDecodeAhead(chunk, offset_in_chunk, out.size());
  BFS_ASSIGN_OR_RETURN(BlockMapPtr map, GetBlockMap(chunk));
  if (map->whole) {
    BFS_ASSIGN_OR_RETURN(auto decoded, Decode(chunk));
    std::memcpy(out.data(), decoded->bytes.get() + offset_in_chunk, out.size());
    return Status::Ok();
  }
  const auto& blocks = map->layout.blocks;
  size_t done = 0;
  for (size_t i = map->layout.BlockAt(offset_in_chunk); done < out.size(); ++i) {
    if (i >= blocks.size()) return Status::InvalidArgument(Where(chunk) + ": read past the blocks");
    BFS_ASSIGN_OR_RETURN(ChunkCache::ChunkPtr block, GetBlock(chunk, *map, i));
    const uint64_t from = offset_in_chunk + done - blocks[i].content_offset;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size() - done, block->size - from));
    std::memcpy(out.data() + done, block->bytes.get() + from, n);
    done += n;
  }
  return Status::Ok();
}

Result<StreamReader::BlockMapPtr> StreamReader::GetBlockMap(const Chunk& chunk) {
  const size_t n = ChunkNumber(chunk);
  if (n == index_.chunks.size() || !block_maps_) {
    auto whole = std::make_shared<BlockMap>();
    whole->whole = true;
    return BlockMapPtr(std::move(whole));
  }
  BlockMapSlot& slot = block_maps_[n];
  MutexLock lock(slot.mu);
  if (!slot.map) {
    // A failure (corruption, I/O) is not remembered: the next read tries again.
    BFS_ASSIGN_OR_RETURN(slot.map, BuildBlockMap(chunk));
  }
  return slot.map;
}

Result<StreamReader::BlockMapPtr> StreamReader::BuildBlockMap(const Chunk& chunk) {
  auto map = std::make_shared<BlockMap>();
  map->whole = true;
  if (!chunk.has_checksum) return LearnBlockMap(chunk);
  // Ours (only our writer records an XXH3): independent blocks, every one full but the last.
  Result<Lz4FrameLayout> layout = WalkLz4Frame(
      [&](uint64_t offset, std::span<uint8_t> buf) {
        return source_->ReadAt(chunk.file_offset + offset, buf);
      },
      chunk.stored_size, chunk.length, Where(chunk));
  if (!layout.ok()) {
    // A malformed frame is reported by the whole read, as before; an I/O error here.
    if (layout.status().code() == StatusCode::kIOError) return layout.status();
    return BlockMapPtr(std::move(map));
  }
  if (layout->linked) return LearnBlockMap(chunk);
  // One block is the whole chunk; without block checksums a block could not be verified alone.
  if (layout->blocks.size() > 1 && layout->block_checksums) {
    map->whole = false;
    map->layout = std::move(layout).value();
  }
  return BlockMapPtr(std::move(map));
}

// Decodes the whole frame once: the exact layout, lz4's checksums checked, every block kept
// in the cache (a sequential reader reads them next), restart points for linked frames. The
// blocks are decoded straight into the cache's buffers: copying a 32 MiB frame's content into
// them cost a ninth of a sequential first read.
Result<StreamReader::BlockMapPtr> StreamReader::LearnBlockMap(const Chunk& chunk) {
  // A per-thread buffer that stays (at most a 32 MiB frame for virtnbdbackup's): a fresh one
  // costs a page fault per 4 KiB, measured at a fifth of a sequential first read.
  thread_local std::unique_ptr<uint8_t[]> stored_buf;
  thread_local size_t stored_cap = 0;
  std::span<uint8_t> stored = Scratch(stored_buf, stored_cap, chunk.stored_size);
  BFS_RETURN_IF_ERROR(source_->ReadAt(chunk.file_offset, stored));
  std::vector<std::shared_ptr<DecodedChunk>> decoded;
  std::vector<uint64_t> hashes;  // XXH3 of each block's content, hashed while in the CPU cache
  Xxh3Stream whole_hash;         // our XXH3 of the chunk, when it has one
  Result<Lz4FrameLayout> layout = DecodeLz4FrameInBlocks(
      stored, chunk.length,
      [&](size_t, size_t room) {
        decoded.push_back(cache_->NewChunk(room));
        return std::span<uint8_t>(decoded.back()->bytes.get(), room);
      },
      [&](size_t i, std::span<const uint8_t> content) {
        decoded[i]->size = content.size();
        hashes.push_back(Xxh3(content));
        if (chunk.has_checksum) whole_hash.Update(content);
      },
      Where(chunk));
  if (!layout.ok()) {
    // Blocks this decode cannot split (short linked blocks, a dictionary ID): one buffer.
    if (layout.status().code() == StatusCode::kInvalidArgument) return LearnWhole(chunk, stored);
    return layout.status();
  }
  if (chunk.has_checksum && whole_hash.Digest() != chunk.checksum) {
    return Status::Corruption(Where(chunk) + ": checksum mismatch");
  }
  auto map = std::make_shared<BlockMap>();
  map->whole = true;
  if (layout->blocks.size() <= 1 || !layout->block_checksums) {
    // Read whole (a block could not be verified alone): the blocks joined into one chunk.
    std::shared_ptr<DecodedChunk> whole = cache_->NewChunk(chunk.length);
    for (size_t i = 0; i < decoded.size(); ++i) {
      std::memcpy(whole->bytes.get() + layout->blocks[i].content_offset, decoded[i]->bytes.get(),
                  decoded[i]->size);
    }
    cache_->Put(cache_owner_, chunk.file_offset, std::move(whole));
    return BlockMapPtr(std::move(map));
  }
  map->whole = false;
  map->layout = std::move(layout).value();
  map->cache = cache_;
  if (map->layout.linked) {
    BFS_RETURN_IF_ERROR(KeepRestartPoints(chunk, decoded, stored, std::move(hashes), *map));
  }
  for (size_t i = 0; i < decoded.size(); ++i) {
    cache_->Put(cache_owner_, map->Key(chunk, i), std::move(decoded[i]));
  }
  return BlockMapPtr(std::move(map));
}

Result<StreamReader::BlockMapPtr> StreamReader::LearnWhole(const Chunk& chunk,
                                                           std::span<const uint8_t> stored) {
  auto map = std::make_shared<BlockMap>();
  map->whole = true;
  std::shared_ptr<DecodedChunk> whole = cache_->NewChunk(chunk.length);
  std::span<uint8_t> content(whole->bytes.get(), chunk.length);
  Result<Lz4FrameLayout> layout = DecodeLz4Frame(stored, content, /*verify=*/true, Where(chunk));
  if (!layout.ok()) {
    // A frame this reader does not split (a dictionary ID) is left to lz4's own decoder.
    if (layout.status().code() == StatusCode::kInvalidArgument) return BlockMapPtr(std::move(map));
    return layout.status();
  }
  if (chunk.has_checksum && Xxh3(content) != chunk.checksum) {
    return Status::Corruption(Where(chunk) + ": checksum mismatch");
  }
  cache_->Put(cache_owner_, chunk.file_offset, std::move(whole));
  return BlockMapPtr(std::move(map));
}

Status StreamReader::KeepRestartPoints(const Chunk& chunk,
                                       const std::vector<std::shared_ptr<DecodedChunk>>& decoded,
                                       std::span<const uint8_t> stored,
                                       std::vector<uint64_t> hashes, BlockMap& map) {
  const auto& blocks = map.layout.blocks;
  map.restart.resize(blocks.size());
  const uint64_t fixed = blocks.size() * (sizeof(uint64_t) + sizeof(uint32_t) + 1);
  if (!cache_->TakeSideBytes(fixed)) return Status::Ok();  // the budget is spent
  map.restart_bytes += fixed;
  map.content_hash = std::move(hashes);
  // The 64 KiB before block i: the end of block i - 1 (DecodeLz4FrameInBlocks made every block
  // but the last at least that long).
  auto window_of = [&](size_t i) {
    const DecodedChunk& prev = *decoded[i - 1];
    return std::span<const uint8_t>(prev.bytes.get() + prev.size - kWindow, kWindow);
  };
  map.has_sparse.assign(blocks.size(), false);
  map.sparse_first.assign(blocks.size() + 1, 0);
  std::vector<std::pair<size_t, std::vector<WindowRange>>> windows;
  for (size_t i = 1; i < blocks.size(); ++i) {
    const Lz4Block& b = blocks[i];
    if (blocks[i - 1].raw) continue;  // its stored bytes are its content: a free restart
    std::span<const uint8_t> window = window_of(i);
    Result<std::vector<WindowRange>> refs =
        b.raw ? std::vector<WindowRange>{}
              : Lz4WindowReferences(stored.subspan(b.stored_offset, b.stored_size), kWindow,
                                    Where(chunk));
    uint64_t cost = 0;
    if (refs.ok()) {
      cost = refs->size() * sizeof(BlockMap::SparseRange);
      for (const WindowRange& r : *refs) cost += r.end - r.begin;
    }
    if (refs.ok() && cost <= kSparseMax) {
      if (!cache_->TakeSideBytes(cost)) break;  // the budget is spent
      map.restart_bytes += cost;
      map.has_sparse[i] = true;
      windows.emplace_back(i, std::move(refs).value());
    } else if (i % kRestartEvery == 0) {
      std::shared_ptr<const Lz4Bytes> packed = CompressBlock(window);
      if (!cache_->TakeSideBytes(packed->capacity())) break;
      map.restart_bytes += packed->capacity();
      map.restart[i] = std::move(packed);
    }
  }
  // Lay the sparse windows out in two flat arrays (a few allocations per frame, not per block).
  size_t ranges = 0, bytes = 0;
  for (const auto& [i, refs] : windows) {
    ranges += refs.size();
    for (const WindowRange& r : refs) bytes += r.end - r.begin;
  }
  map.sparse.reserve(ranges);
  map.sparse_bytes.resize(bytes);
  size_t next = 1, at = 0;
  for (const auto& [i, refs] : windows) {
    for (; next <= i; ++next) map.sparse_first[next] = static_cast<uint32_t>(map.sparse.size());
    const uint8_t* window = window_of(i).data();
    for (const WindowRange& r : refs) {
      map.sparse.push_back({r, static_cast<uint32_t>(at)});
      std::memcpy(map.sparse_bytes.data() + at, window + r.begin, r.end - r.begin);
      at += r.end - r.begin;
    }
  }
  for (; next <= blocks.size(); ++next) {
    map.sparse_first[next] = static_cast<uint32_t>(map.sparse.size());
  }
  return Status::Ok();
}

Status StreamReader::CheckLoneBlock(const Chunk& chunk, const BlockMap& map, size_t i,
                                    std::span<const uint8_t> content) const {
  if (!map.content_hash.empty() && Xxh3(content) != map.content_hash[i]) {
    return Status::Corruption(Where(chunk) + ": lz4 block " + std::to_string(i) +
                              " decoded alone differs from the checked whole decode");
  }
  return Status::Ok();
}

Result<ChunkCache::ChunkPtr> StreamReader::GetBlock(const Chunk& chunk, const BlockMap& map,
                                                    size_t i) {
  const Lz4Block& b = map.layout.blocks[i];
  BFS_ASSIGN_OR_RETURN(
      ChunkCache::ChunkPtr block,
      cache_->GetOrDecode(cache_owner_, map.Key(chunk, i), b.content_size,
                          [&](std::span<uint8_t> out) { return DecodeBlock(chunk, map, i, out); }));
  if (block->size != b.content_size) {
    return Status::InvalidArgument(Where(chunk) + ": cached block has " +
                                   std::to_string(block->size) + " bytes");
  }
  return block;
}

Result<std::span<const uint8_t>> StreamReader::ReadStoredBlock(const Chunk& chunk,
                                                               const BlockMap& map, size_t i,
                                                               std::span<uint8_t> buf) {
  const Lz4Block& b = map.layout.blocks[i];
  std::span<uint8_t> stored = buf.first(b.stored_size);
  BFS_RETURN_IF_ERROR(source_->ReadAt(chunk.file_offset + b.stored_offset, stored));
  // Whatever -o verify says, as whole lz4 chunks were checked when decoded; once per block.
  std::atomic<bool>& checked = map.Checked(i);
  if (!checked.load(std::memory_order_acquire)) {
    BFS_RETURN_IF_ERROR(CheckLz4Block(map.layout, b, stored, Where(chunk)));
    checked.store(true, std::memory_order_release);
  }
  return std::span<const uint8_t>(stored);
}

Status StreamReader::DecodeBlock(const Chunk& chunk, const BlockMap& map, size_t i,
                                 std::span<uint8_t> out) {
  thread_local std::unique_ptr<uint8_t[]> buf;
  thread_local size_t capacity = 0;
  std::vector<ChunkCache::ChunkPtr> keep;
  std::span<const uint8_t> dict;
  if (map.layout.linked) {
    BFS_ASSIGN_OR_RETURN(dict, BlockDictionary(chunk, map, i, keep));
  }
  BFS_ASSIGN_OR_RETURN(
      std::span<const uint8_t> stored,
      ReadStoredBlock(chunk, map, i, Scratch(buf, capacity, map.layout.blocks[i].stored_size)));
  BFS_RETURN_IF_ERROR(DecodeLz4Block(map.layout.blocks[i], stored, dict, out, Where(chunk)));
  return CheckLoneBlock(chunk, map, i, out);
}

Result<std::span<const uint8_t>> StreamReader::BlockDictionary(
    const Chunk& chunk, const BlockMap& map, size_t i, std::vector<ChunkCache::ChunkPtr>& keep) {
  const auto& blocks = map.layout.blocks;
  // The nearest block s <= i whose dictionary is at hand: the frame's start, a restart point,
  // a block after a raw one (the stored bytes are the content) or after a cached one.
  size_t s = i;
  std::span<const uint8_t> dict;
  for (; s > 0; --s) {
    if (ChunkCache::ChunkPtr prev = cache_->Get(cache_owner_, map.Key(chunk, s - 1))) {
      dict = std::span<const uint8_t>(prev->bytes.get(), prev->size);
      keep.push_back(std::move(prev));
      break;
    }
    if (blocks[s - 1].raw) {
      std::shared_ptr<DecodedChunk> raw = cache_->NewChunk(blocks[s - 1].stored_size);
      BFS_ASSIGN_OR_RETURN(dict, ReadStoredBlock(chunk, map, s - 1, {raw->bytes.get(), raw->size}));
      keep.push_back(std::move(raw));
      break;
    }
    if (!map.has_sparse.empty() && map.has_sparse[s]) {
      std::shared_ptr<DecodedChunk> window = cache_->NewChunk(kWindow);
      for (uint32_t k = map.sparse_first[s]; k < map.sparse_first[s + 1]; ++k) {
        const BlockMap::SparseRange& r = map.sparse[k];
        std::memcpy(window->bytes.get() + r.range.begin, map.sparse_bytes.data() + r.at,
                    r.range.end - r.range.begin);
      }
      dict = std::span<const uint8_t>(window->bytes.get(), kWindow);
      keep.push_back(std::move(window));
      break;
    }
    if (const auto& packed = map.restart[s]) {
      std::shared_ptr<DecodedChunk> plain = cache_->NewChunk(kWindow);
      const int n =
          LZ4_decompress_safe(reinterpret_cast<const char*>(packed->data()),
                              reinterpret_cast<char*>(plain->bytes.get()),
                              static_cast<int>(packed->size()), static_cast<int>(kWindow));
      if (n != static_cast<int>(kWindow)) {
        return Status::Corruption(Where(chunk) + ": restart point in memory does not decode");
      }
      dict = std::span<const uint8_t>(plain->bytes.get(), kWindow);
      keep.push_back(std::move(plain));
      break;
    }
  }
  // Decode s .. i-1, each the dictionary of the next, and keep them in the cache.
  for (; s < i; ++s) {
    thread_local std::unique_ptr<uint8_t[]> buf;
    thread_local size_t capacity = 0;
    std::shared_ptr<DecodedChunk> block = cache_->NewChunk(blocks[s].content_size);
    BFS_ASSIGN_OR_RETURN(
        std::span<const uint8_t> stored,
        ReadStoredBlock(chunk, map, s, Scratch(buf, capacity, blocks[s].stored_size)));
    BFS_RETURN_IF_ERROR(
        DecodeLz4Block(blocks[s], stored, dict, {block->bytes.get(), block->size}, Where(chunk)));
    BFS_RETURN_IF_ERROR(CheckLoneBlock(chunk, map, s, {block->bytes.get(), block->size}));
    dict = std::span<const uint8_t>(block->bytes.get(), block->size);
    cache_->Put(cache_owner_, map.Key(chunk, s), block);
    keep.push_back(std::move(block));
  }
  return dict;
}

}  // namespace backupfs
