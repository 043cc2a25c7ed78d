// Where a restored disk image goes: a qcow2 or raw file written through qemu-nbd, a sparse raw
// file, or an existing block device. The restore copier drives every kind through this one
// interface, with one thread per lane.
//
// Files are written as `<path>.partial` and renamed by Finish() once flushed and fsynced, so a
// file under its final name is complete; a writer destroyed before Finish() removes its
// partial file. A block device cannot be renamed: it is complete only when Finish() returns.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "stream/status.h"

namespace backupfs {

class ImageWriter {
 public:
  virtual ~ImageWriter() = default;

  // How many threads may write at once, each passing its own lane in [0, lanes()).
  virtual unsigned lanes() const = 0;
  // Writes start and end on multiples of this (except at the end of the image), and cover
  // each such block at most once: a qcow2 writer's cluster size; 1 for most writers.
  virtual uint64_t grain() const { return 1; }
  virtual Status Write(unsigned lane, uint64_t offset, std::span<const uint8_t> bytes) = 0;
  // Makes [offset, offset + length) read as zeros (needed only where !zeroed_at_start()).
  virtual Status Zero(unsigned lane, uint64_t offset, uint64_t length) = 0;
  // True when the new image reads as zeros everywhere, so holes need no write at all (and
  // stay unallocated: a thin image).
  virtual bool zeroed_at_start() const = 0;
  // Flushes, makes the image durable and publishes it under its final name. Call once, after
  // every Write has returned.
  virtual Status Finish() = 0;
  // The final name (a file, or the block device).
  virtual const std::string& path() const = 0;
};

}  // namespace backupfs
