// The chunk index of one data file: where every range of the virtual disk that the file covers
// is stored, and (for files we wrote) an XXH3-64 of its bytes. Persisted as a sidecar file
// `<data file>.idx`, specified in man backupfs-stream(5).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "stream/file.h"
#include "stream/status.h"

namespace backupfs {

// The largest chunk read whole (lz4 chunks, checksummed chunks): bounds the memory one read
// may take. virtnbdbackup's lz4 chunks are at most the NBD request size, 32 MiB with QEMU.
inline constexpr uint64_t kMaxChunkLength = 256u << 20;

enum class ChunkKind : uint8_t { kData = 1, kZero = 2 };

// One contiguous range of the virtual disk stored one way: a piece of an uncompressed data
// frame, one lz4 frame of a compressed data frame, or a zero frame.
struct Chunk {
  uint64_t offset = 0;       // on the virtual disk
  uint64_t length = 0;       // bytes of the virtual disk (uncompressed)
  uint64_t file_offset = 0;  // first stored byte in the data file (data chunks)
  uint64_t stored_size = 0;  // bytes stored: length, or the lz4 frame's size; 0 for zero chunks
  uint64_t checksum = 0;     // XXH3-64 of the uncompressed bytes, when has_checksum
  uint32_t frame = 0;        // ordinal of the frame it belongs to (0 = first data/zero frame)
  ChunkKind kind = ChunkKind::kData;
  bool compressed = false;
  bool has_checksum = false;

  uint64_t end() const { return offset + length; }
  bool operator==(const Chunk&) const = default;
};

// What ties an index to the bytes of its data file without trusting mtime or inode numbers,
// so that a copied saveset keeps its indexes: the size and XXH3 of the first and last 64 KiB.
struct DataFileIdentity {
  uint64_t size = 0;
  uint64_t head_hash = 0;
  uint64_t tail_hash = 0;
  bool operator==(const DataFileIdentity&) const = default;
};
inline constexpr uint64_t kIdentitySpan = 64 * 1024;
Result<DataFileIdentity> IdentifyDataFile(const ByteSource& data);

struct StreamIndex {
  DataFileIdentity identity;
  bool compressed = false;
  uint64_t checksum_granule = 0;  // 0 when unknown (built by scanning)
  std::vector<Chunk> chunks;      // ascending offset, non-overlapping, no empty chunk

  // The chunks that intersect [offset, offset + length): [first, last) indexes into chunks.
  std::pair<size_t, size_t> Find(uint64_t offset, uint64_t length) const;
};

std::vector<uint8_t> EncodeIndex(const StreamIndex& index);

// Parses a sidecar file's bytes. Anything malformed (magic, version, checksum, size, record
// fields, order) is Corruption naming `file` and the byte offset.
Result<StreamIndex> DecodeIndex(std::span<const uint8_t> bytes, const std::string& file);

// Checks that chunks are sorted, non-overlapping, non-empty, inside [0, virtual_size) and that
// data chunks lie inside [payload_begin, payload_end) of the data file in ascending order.
Status ValidateChunks(const StreamIndex& index, uint64_t virtual_size, uint64_t payload_begin,
                      uint64_t payload_end, const std::string& file);

}  // namespace backupfs
