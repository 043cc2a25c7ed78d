#include "backupfs/image_source.h"

#include <algorithm>

namespace backupfs {

Status ImageSource::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size() || out.size() > size() - offset) return PastEnd(*this, offset, out.size());
  return image_->Get().Read(offset, out);
}

uint64_t ImageSource::NextData(uint64_t offset) const {
  return std::min(image_->Get().NextData(offset), size());
}

uint64_t ImageSource::NextHole(uint64_t offset) const {
  return std::min(image_->Get().NextHole(offset), size());
}

}  // namespace backupfs
