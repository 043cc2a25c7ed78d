// The raw image of one disk at one restore point: the chain of data files merged once into a
// sorted, non-overlapping extent map; a read is a binary search plus a dispatch per extent
// (nbdkit's regions). Knows nothing of FUSE: backupfs-restore reads images through it too.
//
// Thread-safe: reads may run concurrently (StreamReader is thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "backupfs/chain.h"
#include "stream/reader.h"
#include "stream/status.h"

namespace backupfs {

struct ImageExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool zero = false;         // reads as zeros (a zero frame); data otherwise
  uint32_t file = 0;         // index into the chain (data extents)
  uint32_t chunk = 0;        // index into that file's chunks
  uint64_t chunk_delta = 0;  // where in the chunk the extent starts

  uint64_t end() const { return offset + length; }
};

class DiskImage {
 public:
  // Merges `chain` (oldest first; later files win) into one extent map, clipped to
  // `virtual_size`. Ranges no file covers are holes and read as zeros.
  static std::shared_ptr<DiskImage> Build(const DiskChain& chain);

  uint64_t size() const { return size_; }
  const std::vector<ImageExtent>& extents() const { return extents_; }

  // Exactly out.size() bytes at offset (clipped by the caller to size()). Corruption of a
  // covering chunk fails the whole read, naming the file and offset: never wrong data.
  Status Read(uint64_t offset, std::span<uint8_t> out) const;

  // A piece of a read that needs no decoding or checking: file bytes (fd >= 0) or zeros.
  struct RawPiece {
    int fd;  // -1 for zeros
    uint64_t file_offset;
    uint64_t length;
  };
  // Describes [offset, offset + length) as raw pieces, for a zero-copy reply; false (and
  // `out` unspecified) when some part must be decoded or verified: use Read() then.
  bool RawPieces(uint64_t offset, uint64_t length, std::vector<RawPiece>* out) const;

  // Asks the kernel to read the stored bytes under [offset, offset + length) ahead
  // (POSIX_FADV_WILLNEED), so that a sequential copy's next reads find them cached: a hint,
  // never an error.
  void WillNeed(uint64_t offset, uint64_t length) const;

  // SEEK_DATA / SEEK_HOLE: the first data (resp. hole) offset at or after `offset`; zero
  // extents count as holes. NextHole returns size() when only data follows; NextData returns
  // size() when none does.
  uint64_t NextData(uint64_t offset) const;
  uint64_t NextHole(uint64_t offset) const;

 private:
  DiskImage(std::vector<std::shared_ptr<StreamReader>> files, uint64_t size)
      : files_(std::move(files)), size_(size) {}
  size_t FirstEndingAfter(uint64_t offset) const;

  std::vector<std::shared_ptr<StreamReader>> files_;
  uint64_t size_;
  std::vector<ImageExtent> extents_;  // data and zero extents, ascending; holes are gaps
};

// A restore point's image, merged from its chain when first asked for: a mount of many
// points keeps extent maps only for the images that are read. Thread-safe.
class LazyImage {
 public:
  explicit LazyImage(DiskChain chain) : chain_(std::move(chain)) {}
  // Builds on the first call (a failure, e.g. bad_alloc, propagates and the next call retries).
  const DiskImage& Get() const {
    std::call_once(once_, [this] { image_ = DiskImage::Build(chain_); });
    return *image_;
  }
  uint64_t size() const { return chain_.virtual_size; }

 private:
  const DiskChain chain_;
  mutable std::once_flag once_;
  mutable std::shared_ptr<DiskImage> image_;  // written once, under once_
};

// Lays `top` over `base` (both sorted, non-overlapping): the result keeps top's extents and
// what of base's they do not cover.
std::vector<ImageExtent> Overlay(const std::vector<ImageExtent>& base,
                                 const std::vector<ImageExtent>& top);

}  // namespace backupfs
