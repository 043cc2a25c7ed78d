// One compressed chunk: a complete LZ4 frame (frame format, with block and content checksums
// and the content size), as virtnbdbackup writes for each NBD read of a data extent.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "stream/status.h"

namespace backupfs {

// A std::allocator whose value-initialisation leaves bytes as they are: resize() of a buffer
// that is written next skips the zero fill (measured: 4% of a `-z` capture's CPU).
template <typename T>
struct NoInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using Lz4Bytes = std::vector<uint8_t, NoInitAllocator<uint8_t>>;

// Compresses `input` into one LZ4 frame at `level` (0 is lz4's default fast mode): independent
// 64 KiB blocks with block and content checksums, so that a reader can decode (and check) any
// one block alone. (Up to 432d3e5: one 4 MiB block per 4 MiB chunk, decoded whole on any read.)
Lz4Bytes Lz4CompressChunk(std::span<const uint8_t> input, int level);

// Decodes one LZ4 frame that must expand to exactly out.size() bytes and must end exactly at
// the end of `input`. lz4's own checksums are checked unless `skip_lz4_checksums`: the caller
// then verifies the decoded bytes itself (our index's XXH3), and lz4's content and block
// checksums, two more passes over the chunk, measured at 42% of the mount's CPU on lz4 reads,
// would only repeat that. Errors are Corruption naming `what` (file and offset of the chunk).
Status Lz4DecompressChunk(std::span<const uint8_t> input, std::span<uint8_t> out,
                          const std::string& what, bool skip_lz4_checksums = false);

}  // namespace backupfs

namespace backupfs {

// The content size recorded in an LZ4 frame header (`header` holds at least the frame's first
// 19 bytes, or all of it when shorter). Corruption when the header is bad or has no size.
Result<uint64_t> Lz4ChunkContentSize(std::span<const uint8_t> header, const std::string& what);
inline constexpr size_t kLz4MaxHeaderSize = 19;

// The most bytes an LZ4 frame of `length` content bytes can take (any block size, with
// checksums): a stored size beyond it cannot be a real chunk.
uint64_t Lz4MaxChunkStoredSize(uint64_t length);

}  // namespace backupfs
