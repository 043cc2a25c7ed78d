// A restore into an existing block device (an LV, a loop device, a SAN LUN). The device keeps
// its old contents where the image is not written, so holes and zero ranges are zeroed
// explicitly: discard with zeroing where the device supports it (thin LVs stay thin), else
// the kernel's zero-out, else plain writes of zeros.
//
// Opened with O_EXCL, which the kernel refuses while the device is mounted or held by
// another exclusive user (device mapper, a running VM with a lock). A device cannot be
// renamed: it is complete only once Finish() has returned; a failed restore leaves it
// partly written, and says so.
#pragma once

#include <memory>
#include <string>

#include "common/image_writer.h"
#include "stream/file.h"

namespace backupfs {

class BlockDeviceWriter final : public ImageWriter {
 public:
  // `size`: the image's virtual size; a device smaller than that is refused.
  static Result<std::unique_ptr<BlockDeviceWriter>> Open(const std::string& device, uint64_t size);

  unsigned lanes() const override { return 4; }
  Status Write(unsigned lane, uint64_t offset, std::span<const uint8_t> bytes) override;
  Status Zero(unsigned lane, uint64_t offset, uint64_t length) override;
  bool zeroed_at_start() const override { return false; }
  Status Finish() override;
  const std::string& path() const override { return device_; }

 private:
  BlockDeviceWriter(std::string device, UniqueFd fd)
      : device_(std::move(device)), fd_(std::move(fd)) {}
  Status WriteZeros(uint64_t offset, uint64_t length);

  const std::string device_;
  UniqueFd fd_;
};

// True when `path` names a block device (following symlinks, as /dev/vg/lv is one).
bool IsBlockDevice(const std::string& path);

// Ok when `path` is a block device of at least `size` bytes (checked before a restore starts;
// Open() checks again, and takes it exclusively).
Status CheckBlockDevice(const std::string& path, uint64_t size);

}  // namespace backupfs
