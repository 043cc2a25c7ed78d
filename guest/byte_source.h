// The bytes the guest readers parse: a disk, a partition, a file inside a filesystem. The mount
// gives them a restore point's DiskImage (backupfs/image.h); unit tests and fuzzers give them
// memory. Nothing here knows of FUSE, savesets or NBD.
//
// Thread-safe: Read may run concurrently from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Exactly out.size() bytes at `offset`. A range past size() is an error (kCorruption: it is a
  // structure on the disk that points there), never a short read.
  virtual Status Read(uint64_t offset, std::span<uint8_t> out) const = 0;
  // What messages call it: "vda at virtnbdbackup.2", "vda partition 2".
  virtual const std::string& name() const = 0;
  // SEEK_DATA / SEEK_HOLE over the source (NextHole: size() when only data follows; NextData:
  // size() when none does). The default knows of no holes.
  virtual uint64_t NextData(uint64_t offset) const { return offset; }
  virtual uint64_t NextHole(uint64_t) const { return size(); }
};

// [offset, offset + length) of another source: a partition of a disk.
class SliceSource final : public ByteSource {
 public:
  SliceSource(std::shared_ptr<const ByteSource> base, uint64_t offset, uint64_t length,
              std::string name);
  uint64_t size() const override { return length_; }
  Status Read(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return name_; }
  uint64_t NextData(uint64_t offset) const override;
  uint64_t NextHole(uint64_t offset) const override;

 private:
  const std::shared_ptr<const ByteSource> base_;
  const uint64_t offset_, length_;
  const std::string name_;
};

// Bytes held in memory (tests, fuzzers).
class MemorySource final : public ByteSource {
 public:
  MemorySource(std::vector<uint8_t> bytes, std::string name)
      : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  Status Read(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return name_; }

 private:
  const std::vector<uint8_t> bytes_;
  const std::string name_;
};

// "<name>: cannot read N bytes at offset X: past its end (S bytes)".
Status PastEnd(const ByteSource& s, uint64_t offset, uint64_t length);

}  // namespace backupfs
