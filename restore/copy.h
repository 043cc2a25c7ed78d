// Copies one restore point's disk image (backupfs's DiskImage: the same extent map the mount
// serves) into an ImageWriter, with one thread per writer lane so that several reads and
// writes are in flight.
//
// Only data is written, in whole 64 KiB blocks of the disk (or the writer's larger grain, a
// qcow2 cluster). Zero extents and holes are left alone where the new image already reads as
// zeros (qcow2, sparse files), and zeroed otherwise (block devices); a block of data that is
// all zeros is treated the same way, as `qemu-img convert` does, so the result is as thin as
// the backup allows. Every data byte is read through the image reader's checks:
// a corrupt chunk stops the copy with an error naming the data file and offset.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "backupfs/image.h"
#include "common/image_writer.h"
#include "stream/status.h"

namespace backupfs {

struct CopyOptions {
  uint64_t piece_bytes = 4u << 20;  // one read and one write; a multiple of kZeroBlock
  // Polled between pieces: once true, the copy stops with a Cancelled status.
  const std::atomic<bool>* cancel = nullptr;
  // Called (from any copy thread) with the data bytes of each piece once it is written.
  std::function<void(uint64_t)> progress;
};

struct CopyStats {
  uint64_t data_bytes = 0;     // data read (BytesToRead)
  uint64_t written_bytes = 0;  // of which written (the rest were zeros)
};

// The granule of zero detection in data (the usual qcow2 cluster size).
inline constexpr uint64_t kZeroBlock = 64u << 10;

// The bytes CopyImage reads into `out`: the image's data extents, rounded out to whole
// blocks of kZeroBlock (or of out.grain(), when larger).
uint64_t BytesToRead(const DiskImage& image, const ImageWriter& out, const CopyOptions& options);

// Writes the blocks of `buf` (the bytes at disk offset `offset`; blocks follow the disk's grid
// of `block`, a multiple of out.grain()) that hold a non-zero byte, through lane `lane`; the
// others are zeroed when out does not read as zeros already. Returns the bytes written.
Result<uint64_t> WriteNonZero(ImageWriter& out, unsigned lane, uint64_t offset, uint64_t block,
                              std::span<const uint8_t> buf);

// Writes `image` into `out` (of at least image.size() bytes); does not call out.Finish().
Result<CopyStats> CopyImage(const DiskImage& image, ImageWriter& out, const CopyOptions& options);

}  // namespace backupfs
