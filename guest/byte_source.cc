#include "guest/byte_source.h"

#include <algorithm>
#include <cstring>

namespace backupfs {

Status PastEnd(const ByteSource& s, uint64_t offset, uint64_t length) {
  return Status::Corruption(s.name() + ": cannot read " + std::to_string(length) +
                            " bytes at offset " + std::to_string(offset) + ": past its end (" +
                            std::to_string(s.size()) + " bytes)");
}

namespace {

bool InRange(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

}  // namespace

SliceSource::SliceSource(std::shared_ptr<const ByteSource> base, uint64_t offset, uint64_t length,
                         std::string name)
    : base_(std::move(base)), offset_(offset), length_(length), name_(std::move(name)) {}

Status SliceSource::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (!InRange(offset, out.size(), length_)) return PastEnd(*this, offset, out.size());
  return base_->ReadAt(offset_ + offset, out);
}

uint64_t SliceSource::NextData(uint64_t offset) const {
  if (offset >= length_) return length_;
  return std::min(base_->NextData(offset_ + offset), offset_ + length_) - offset_;
}

uint64_t SliceSource::NextHole(uint64_t offset) const {
  if (offset >= length_) return length_;
  return std::min(base_->NextHole(offset_ + offset), offset_ + length_) - offset_;
}

Status BufferSource::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (!InRange(offset, out.size(), bytes_.size())) return PastEnd(*this, offset, out.size());
  if (!out.empty()) std::memcpy(out.data(), bytes_.data() + offset, out.size());
  return Status::Ok();
}

}  // namespace backupfs
