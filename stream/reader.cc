#include "stream/reader.h"

#include "stream/xxh3.h"

#include <cstring>
#include <filesystem>

#include "stream/checksum.h"
#include "stream/local_storage.h"
#include "stream/lz4_chunk.h"
#include "stream/scanner.h"

namespace backupfs {
namespace {
// Per-thread read buffers larger than this are released after use (chunks are usually 1 or
// 4 MiB; a 256 MiB one must not stay pinned in every FUSE thread).
constexpr size_t kKeepBuffer = 64u << 20;

// A per-thread buffer that only grows, with no zero fill: a std::vector resized from a 1 MiB
// chunk up to a 3 MiB one would clear the 2 MiB that the read then overwrites.
class ScratchBuffer {
 public:
  std::span<uint8_t> Get(size_t size) {
    if (size > capacity_) {
      bytes_.reset();  // free before allocating: never hold both
      capacity_ = 0;
      bytes_.reset(new uint8_t[size]);
      capacity_ = size;
    }
    return {bytes_.get(), size};
  }
  // Releases a buffer too large to keep pinned in every FUSE thread.
  void Trim() {
    if (capacity_ > kKeepBuffer) {
      bytes_.reset();
      capacity_ = 0;
    }
  }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t capacity_ = 0;
};
// The sidecar index `idx_name`; NotFound when there is none. A sidecar needs at most a 48-byte
// record per byte of its data file (each chunk stores at least one byte or is a 40-byte zero
// frame): a larger one is never read.
Result<std::string> ReadSidecar(const Storage& storage, const std::string& idx_name,
                                uint64_t data_size) {
  return storage.ReadAll(idx_name, 64 + 48 * (data_size + 1));
}

}  // namespace

Result<std::unique_ptr<StreamReader>> StreamReader::Open(const std::string& path,
                                                         const ReaderOptions& options) {
  const std::filesystem::path p(path);
  std::unique_ptr<Storage> dir = OpenLocalStorage(p.parent_path().string());
  return Open(*dir, p.filename().string(), options);
}

Result<std::unique_ptr<StreamReader>> StreamReader::Open(Storage& storage, std::string_view name,
                                                         const ReaderOptions& options) {
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<StoredFile> source, storage.Open(name));
  std::unique_ptr<StreamReader> r(new StreamReader(std::move(source), options));
  r->cache_ = options.cache ? options.cache : std::make_shared<ChunkCache>(options.cache_bytes);
  BFS_RETURN_IF_ERROR(r->LoadIndex(storage, std::string(name) + ".idx"));
  r->verified_.reset(new std::atomic<bool>[r->index_.chunks.size()]());
  if (r->index_.compressed) {
    r->block_maps_.reset(new BlockMapSlot[r->index_.chunks.size()]);
    if (options.decode_ahead) {
      r->ahead_queued_.reset(new std::atomic<bool>[r->index_.chunks.size()]());
      StreamReader* self = r.get();
      r->ahead_ = std::make_unique<DecodeAhead>([self](size_t n) {
        // An error is not remembered: the read that needs the chunk decodes it and reports.
        (void)self->GetBlockMap(self->index_.chunks[n]);
      });
    }
  }
  return r;
}

StreamReader::~StreamReader() { ahead_.reset(); }

Status StreamReader::LoadIndex(Storage& storage, const std::string& idx_name) {
  BFS_ASSIGN_OR_RETURN(meta_, ReadMetadata(*source_, &payload_begin_));
  BFS_ASSIGN_OR_RETURN(DataFileIdentity identity, IdentifyDataFile(*source_));
  const std::string idx_path = storage.Describe(idx_name);
  Result<std::string> idx_bytes = ReadSidecar(storage, idx_name, source_->size());
  if (idx_bytes.ok()) {
    auto bytes = std::span(reinterpret_cast<const uint8_t*>(idx_bytes->data()), idx_bytes->size());
    Result<StreamIndex> idx = DecodeIndex(bytes, idx_path);
    Status s = idx.status();
    if (s.ok() && !(idx->identity == identity)) {
      s = Status::Stale(idx_path + ": index does not match its data file (size or content " +
                        "changed since it was written)");
    }
    if (s.ok() && idx->compressed != meta_.compressed()) {
      s = Status::Stale(idx_path + ": index and data file disagree on compression");
    }
    if (s.ok()) {
      Result<uint64_t> frames_end = FramesEnd(*source_, meta_, payload_begin_);
      s = frames_end.ok()
              ? ValidateChunks(*idx, meta_.virtual_size, payload_begin_, *frames_end, idx_path)
              : frames_end.status();
    }
    if (s.ok()) {
      index_ = std::move(idx).value();
      origin_ = IndexOrigin::kSidecar;
      return Status::Ok();
    }
    index_problem_ = s.ToString();
  } else if (idx_bytes.status().code() != StatusCode::kNotFound) {
    index_problem_ = idx_bytes.status().ToString();
  }
  BFS_ASSIGN_OR_RETURN(StreamLayout layout, ScanStream(*source_));
  index_ = IndexFromLayout(layout, identity);
  // The scan checked the frames; this checks the chunks it derived by the same rules a sidecar
  // must pass (bounded sizes, inside the frames), so no reader trusts an unchecked chunk.
  BFS_RETURN_IF_ERROR(
      ValidateChunks(index_, meta_.virtual_size, layout.payload_begin, layout.stop_offset, path()));
  origin_ = IndexOrigin::kScanned;
  PutOptions derived;
  derived.derived = true;
  if (options_.write_missing_index && index_problem_.empty() &&
      storage.Put(idx_name, EncodeIndex(index_), derived).ok()) {
    origin_ = IndexOrigin::kScannedWritten;
  }
  return Status::Ok();
}

std::string StreamReader::Where(const Chunk& chunk) const {
  return path() + ": offset " + std::to_string(chunk.file_offset) + " (disk offset " +
         std::to_string(chunk.offset) + ", " + std::to_string(chunk.length) + " bytes)";
}

Status StreamReader::ReadWholeChunk(const Chunk& chunk, std::span<uint8_t> out) {
  if (chunk.compressed) {
    thread_local ScratchBuffer packed;
    std::span<uint8_t> in = packed.Get(chunk.stored_size);
    BFS_RETURN_IF_ERROR(source_->ReadAt(chunk.file_offset, in));
    // With an XXH3 of the chunk (checked below, always), lz4's own checksums add nothing.
    Status s = Lz4DecompressChunk(in, out, Where(chunk), /*skip_lz4_checksums=*/chunk.has_checksum);
    packed.Trim();
    BFS_RETURN_IF_ERROR(s);
  } else if (chunk.has_checksum) {
    return ReadAndHash(chunk, out);
  } else {
    return source_->ReadAt(chunk.file_offset, out);
  }
  if (chunk.has_checksum && Xxh3(out) != chunk.checksum) {
    return Status::Corruption(Where(chunk) + ": checksum mismatch");
  }
  return Status::Ok();
}

// Hashes each piece right after reading it, while it is still in the CPU cache: hashing the
// whole chunk afterwards reads it from memory a second time.
Status StreamReader::ReadAndHash(const Chunk& chunk, std::span<uint8_t> out) {
  constexpr size_t kPiece = 128 * 1024;
  thread_local std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                              &XXH3_freeState);
  XXH3_64bits_reset(state.get());
  for (size_t done = 0; done < out.size(); done += kPiece) {
    std::span<uint8_t> piece = out.subspan(done, std::min(kPiece, out.size() - done));
    BFS_RETURN_IF_ERROR(source_->ReadAt(chunk.file_offset + done, piece));
    XXH3_64bits_update(state.get(), piece.data(), piece.size());
  }
  if (XXH3_64bits_digest(state.get()) != chunk.checksum) {
    return Status::Corruption(Where(chunk) + ": checksum mismatch");
  }
  return Status::Ok();
}

Status StreamReader::VerifyChunk(const Chunk& chunk) {
  if (chunk.kind == ChunkKind::kZero) return Status::Ok();
  std::vector<uint8_t> bytes(chunk.length);
  return ReadWholeChunk(chunk, bytes);
}

Result<std::shared_ptr<const DecodedChunk>> StreamReader::Decode(const Chunk& chunk) {
  // The cache runs one decode per chunk at a time, into the buffer it then keeps; concurrent
  // requests for the chunk wait for that decode instead of repeating it.
  BFS_ASSIGN_OR_RETURN(
      ChunkCache::ChunkPtr decoded,
      cache_->GetOrDecode(cache_owner_, chunk.file_offset, chunk.length,
                          [&](std::span<uint8_t> out) { return ReadWholeChunk(chunk, out); }));
  // A key names one chunk of one reader, so the size always matches; checked because a
  // mismatch would turn the copy out of it into an overrun.
  if (decoded->size != chunk.length) {
    return Status::InvalidArgument(Where(chunk) + ": cached chunk has " +
                                   std::to_string(decoded->size) + " bytes");
  }
  return decoded;
}

Status StreamReader::ReadChunk(const Chunk& chunk, uint64_t offset_in_chunk,
                               std::span<uint8_t> out) {
  if (offset_in_chunk > chunk.length || out.size() > chunk.length - offset_in_chunk) {
    return Status::InvalidArgument(Where(chunk) + ": read past the end of the chunk");
  }
  if (chunk.kind == ChunkKind::kZero) {
    std::memset(out.data(), 0, out.size());
    return Status::Ok();
  }
  if (chunk.compressed) return ReadCompressed(chunk, offset_in_chunk, out);
  std::atomic<bool>* verified = VerifiedFlag(chunk);
  if (!options_.verify_checksums || !chunk.has_checksum ||
      (verified && verified->load(std::memory_order_acquire))) {
    return source_->ReadAt(chunk.file_offset + offset_in_chunk, out);
  }
  // A first read of a chunk checks all of it; the page cache, not ours, keeps it for next time.
  if (offset_in_chunk == 0 && out.size() == chunk.length) {
    BFS_RETURN_IF_ERROR(ReadWholeChunk(chunk, out));
  } else {
    thread_local ScratchBuffer whole;
    std::span<uint8_t> bytes = whole.Get(chunk.length);
    Status s = ReadWholeChunk(chunk, bytes);
    if (s.ok()) std::memcpy(out.data(), bytes.data() + offset_in_chunk, out.size());
    whole.Trim();
    BFS_RETURN_IF_ERROR(s);
  }
  if (verified) verified->store(true, std::memory_order_release);
  return Status::Ok();
}

size_t StreamReader::ChunkNumber(const Chunk& chunk) const {
  const Chunk* first = index_.chunks.data();
  if (&chunk < first || &chunk >= first + index_.chunks.size()) return index_.chunks.size();
  return static_cast<size_t>(&chunk - first);
}

std::atomic<bool>* StreamReader::VerifiedFlag(const Chunk& chunk) {
  const size_t n = ChunkNumber(chunk);
  return n < index_.chunks.size() ? &verified_[n] : nullptr;
}

Status StreamReader::Read(uint64_t offset, std::span<uint8_t> out) {
  if (offset > meta_.virtual_size || out.size() > meta_.virtual_size - offset) {
    return Status::InvalidArgument(path() + ": read of " + std::to_string(out.size()) +
                                   " bytes at " + std::to_string(offset) +
                                   " is past the disk size " + std::to_string(meta_.virtual_size));
  }
  auto [first, last] = index_.Find(offset, out.size());
  uint64_t pos = offset;
  const uint64_t end = offset + out.size();
  for (size_t i = first; i < last; ++i) {
    const Chunk& c = index_.chunks[i];
    if (c.offset > pos) {  // a gap no frame covers
      std::memset(out.data() + (pos - offset), 0, c.offset - pos);
      pos = c.offset;
    }
    uint64_t n = std::min(end, c.end()) - pos;
    BFS_RETURN_IF_ERROR(ReadChunk(c, pos - c.offset, out.subspan(pos - offset, n)));
    pos += n;
  }
  std::memset(out.data() + (pos - offset), 0, end - pos);
  return Status::Ok();
}

}  // namespace backupfs
