// A regular file of an ext2/3/4 filesystem: its block map, read once at open, and reads that
// go straight to the device source (no libext2fs call, no filesystem lock).
//
// Lifetime: an ExtFile holds a shared_ptr to the source it reads (the device, or the device
// with the replayed journal laid over it) and its own map, so it stays valid after the GuestFs
// that opened it is destroyed.
#pragma once

#include <ext2fs/ext2fs.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "guest/byte_source.h"
#include "guest/guest_fs.h"
#include "stream/status.h"

namespace backupfs {

// `count` blocks of the file from logical block `logical` lie at physical block `physical`.
struct ExtRun {
  uint64_t logical = 0;
  uint64_t physical = 0;
  uint64_t count = 0;
};

// The most runs a file's map may have (24 bytes each).
inline constexpr size_t kMaxExtRuns = 4 * 1024 * 1024;

// The data runs of inode `ino` (extent leaves, or indirect blocks coalesced), sorted by logical
// block; uninitialized extents are left out (they read as zeros). Every run is checked to lie
// inside the filesystem. `what` names the filesystem in messages. The caller holds whatever
// lock guards `fs`.
Result<std::vector<ExtRun>> ReadExtBlockMap(ext2_filsys fs, ext2_ino_t ino, ext2_inode* inode,
                                            const std::string& what);

class ExtFile final : public GuestFile {
 public:
  // A file whose bytes are on the device, per `runs`.
  ExtFile(std::shared_ptr<const ByteSource> device, uint32_t block_size, uint64_t size,
          std::vector<ExtRun> runs, std::string what);
  // A file held in memory (inline data).
  ExtFile(std::vector<uint8_t> bytes, std::string what);

  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, std::span<uint8_t> out) const override;
  uint64_t NextData(uint64_t offset) const override;
  uint64_t NextHole(uint64_t offset) const override;

 private:
  // The first run whose end is past logical block `block`, or runs_.end().
  std::vector<ExtRun>::const_iterator RunFrom(uint64_t block) const;

  const std::shared_ptr<const ByteSource> device_;
  const uint32_t block_size_ = 0;
  const uint64_t size_ = 0;
  const std::vector<ExtRun> runs_;
  const std::vector<uint8_t> inline_;
  const bool is_inline_ = false;
  const std::string what_;  // "vda1 inode 12"
};

// A GuestFile seen as a ByteSource (the journal inode, for ReplayJournal).
class GuestFileSource final : public ByteSource {
 public:
  GuestFileSource(std::shared_ptr<const GuestFile> file, std::string name)
      : file_(std::move(file)), name_(std::move(name)) {}
  uint64_t size() const override { return file_->size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return name_; }

 private:
  const std::shared_ptr<const GuestFile> file_;
  const std::string name_;
};

}  // namespace backupfs
