// What libblkid sees of a ByteSource: a sparse memfd the size of the disk into which only chosen
// regions are copied (libblkid reads through a descriptor, not a callback). A region never
// copied reads as zeros, which every prober takes for "nothing here".
//
// Not thread-safe: one ProbeDisk call owns its window.
#pragma once

#include <blkid/blkid.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "guest/byte_source.h"
#include "stream/status.h"

namespace backupfs {

inline constexpr uint64_t kMiB = 1024 * 1024;

// Owns one descriptor. (stream/file.h has OwnedFd, but it also declares a ByteSource and a
// MemorySource of its own that clash with guest/byte_source.h's in one translation unit.)
class OwnedFd {
 public:
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&&) = delete;
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd();
  int get() const { return fd_; }

 private:
  int fd_;
};

class BlkidWindow {
 public:
  // The memfd is as large as the disk and holds nothing yet (ftruncate: no memory).
  static Result<BlkidWindow> Create(const ByteSource& disk);

  // Copies [offset, offset + length), clipped to the disk, in 64 KiB granules; true when a
  // granule was copied for the first time. Past the budget nothing more is copied (false,
  // and exhausted() says so). Fails only when the disk cannot be read.
  Result<bool> Add(uint64_t offset, uint64_t length);
  // Makes [offset, offset + length) read as zeros again: a structure blkid must not see.
  Status Blank(uint64_t offset, uint64_t length);
  // Reads what the window holds (zeros where nothing was copied), for the hints below.
  Status Read(uint64_t offset, std::span<uint8_t> out) const;

  int fd() const { return fd_.get(); }
  const ByteSource& disk() const { return *disk_; }
  bool exhausted() const { return exhausted_; }

 private:
  BlkidWindow(const ByteSource& disk, OwnedFd fd) : disk_(&disk), fd_(std::move(fd)) {}
  Status CopyGranule(uint64_t index);

  const ByteSource* disk_;
  OwnedFd fd_;
  std::set<uint64_t> copied_;  // granule indexes
  bool exhausted_ = false;
};

struct BlkidProbeDeleter {
  void operator()(blkid_probe pr) const { blkid_free_probe(pr); }
};
using BlkidProbe = std::unique_ptr<std::remove_pointer_t<blkid_probe>, BlkidProbeDeleter>;

// A probe over [offset, offset + size) of the window's descriptor.
Result<BlkidProbe> NewBlkidProbe(const BlkidWindow& window, uint64_t offset, uint64_t size);

// A GPT entry array larger than this (32768 entries of 128 bytes; real ones hold 128) is not
// shown to blkid, which would allocate and read all of it, up to 4 GiB.
inline constexpr uint64_t kMaxGptEntryArray = 4 * kMiB;

// Regions a table points to that blkid will read, beyond the first and last MiB: the GPT entry
// arrays named by the primary and backup headers, and the chain of extended boot records of
// the extended partition at [offset, offset + size). Bounded; true when anything was new.
// A GPT header naming an array above kMaxGptEntryArray is blanked and named in `problems`.
Result<bool> AddGptEntryArrays(BlkidWindow& window, std::vector<std::string>& problems);
Result<bool> AddExtendedChain(BlkidWindow& window, uint64_t offset, uint64_t size);
// What blkid reads beyond the first MiB of a filesystem at [offset, offset + size) whose boot
// sector the window already holds: an NTFS volume's first MFT records ($MFT, and $Volume with
// the label), a FAT32 or exFAT volume's first root directory cluster (the label entry).
Result<bool> AddFilesystemHints(BlkidWindow& window, uint64_t offset, uint64_t size);

}  // namespace backupfs
