// A restore point's disk image as the guest readers' ByteSource (guest/byte_source.h): the
// partitions and filesystems of a point are parsed from the same reads the mount serves.
#pragma once

#include <memory>
#include <string>

#include "backupfs/image.h"
#include "guest/byte_source.h"

namespace backupfs {

class ImageSource final : public ByteSource {
 public:
  // `name`: what messages call the disk ("vda at virtnbdbackup.2").
  ImageSource(std::shared_ptr<LazyImage> image, std::string name)
      : image_(std::move(image)), name_(std::move(name)) {}
  uint64_t size() const override { return image_->size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return name_; }
  uint64_t NextData(uint64_t offset) const override;
  uint64_t NextHole(uint64_t offset) const override;

 private:
  const std::shared_ptr<LazyImage> image_;
  const std::string name_;
};

}  // namespace backupfs
