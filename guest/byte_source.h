// The bytes the guest readers parse: a disk, a partition, a file inside a filesystem, as the
// stream layer's ByteSource (stream/file.h). The mount gives them a restore point's DiskImage
// (backupfs/image_source.h); unit tests and fuzzers give them memory. Nothing here knows of
// FUSE, savesets or NBD.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "stream/file.h"
#include "stream/status.h"

namespace backupfs {

// [offset, offset + length) of another source: a partition of a disk.
class SliceSource final : public ByteSource {
 public:
  SliceSource(std::shared_ptr<const ByteSource> base, uint64_t offset, uint64_t length,
              std::string name);
  uint64_t size() const override { return length_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return name_; }
  uint64_t NextData(uint64_t offset) const override;
  uint64_t NextHole(uint64_t offset) const override;

 private:
  const std::shared_ptr<const ByteSource> base_;
  const uint64_t offset_, length_;
  const std::string name_;
};

// Bytes it owns (tests, fuzzers, small structures copied out of a disk).
class BufferSource final : public ByteSource {
 public:
  BufferSource(std::vector<uint8_t> bytes, std::string name)
      : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return name_; }

 private:
  const std::vector<uint8_t> bytes_;
  const std::string name_;
};

// "<name>: cannot read N bytes at offset X: past its end (S bytes)".
Status PastEnd(const ByteSource& s, uint64_t offset, uint64_t length);

}  // namespace backupfs
