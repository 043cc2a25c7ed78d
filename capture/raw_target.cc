#include "capture/raw_target.h"

#include <algorithm>
#include <vector>

#include "common/raw_image.h"

namespace backupfs {

namespace {

// A sparse file: the extents are written where they belong, the rest stays a hole.
class SparseFileTarget final : public RawTarget {
 public:
  explicit SparseFileTarget(std::unique_ptr<RawImageWriter> file) : file_(std::move(file)) {}
  Status Write(uint64_t offset, std::span<const uint8_t> bytes) override {
    return file_->Write(offset, bytes);
  }
  Status Finish(const StreamWriter::CommitCheck& may_commit) override {
    if (may_commit) BFS_RETURN_IF_ERROR(may_commit());  // unfinished, the file is removed
    return file_->Finish();
  }
  uint64_t bytes_written() const override { return file_->bytes_written(); }

 private:
  std::unique_ptr<RawImageWriter> file_;
};

// Zeros appended at once at most: bounds the buffer, whatever the gap.
constexpr size_t kZeroBlock = 1u << 20;

// An object written front to back: each gap becomes zeros before the bytes after it.
class ObjectTarget final : public RawTarget {
 public:
  ObjectTarget(std::unique_ptr<ObjectWriter> out, uint64_t size)
      : out_(std::move(out)), size_(size) {}

  Status Write(uint64_t offset, std::span<const uint8_t> bytes) override {
    if (offset < out_->size() || offset > size_ || bytes.size() > size_ - offset) {
      return Status::InvalidArgument("write of " + std::to_string(bytes.size()) + " bytes at " +
                                     std::to_string(offset) + " out of order or past the end of " +
                                     out_->name());
    }
    BFS_RETURN_IF_ERROR(ZerosUpTo(offset));
    return out_->Append(bytes);
  }

  Status Finish(const StreamWriter::CommitCheck& may_commit) override {
    BFS_RETURN_IF_ERROR(ZerosUpTo(size_));
    BFS_RETURN_IF_ERROR(out_->Flush());
    if (may_commit) BFS_RETURN_IF_ERROR(may_commit());  // unfinished, the upload is aborted
    return out_->Commit();
  }

  uint64_t bytes_written() const override { return out_->size(); }

 private:
  Status ZerosUpTo(uint64_t end) {
    if (out_->size() < end && zeros_.empty()) zeros_.resize(kZeroBlock);
    while (out_->size() < end) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kZeroBlock, end - out_->size()));
      BFS_RETURN_IF_ERROR(out_->Append(std::span(zeros_.data(), n)));
    }
    return Status::Ok();
  }

  std::unique_ptr<ObjectWriter> out_;
  const uint64_t size_;
  std::vector<uint8_t> zeros_;  // kZeroBlock once a gap is met
};

}  // namespace

Result<std::unique_ptr<RawTarget>> RawTarget::Create(Storage& saveset, const std::string& name,
                                                     uint64_t size) {
  if (saveset.LocalDir()) {
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<RawImageWriter> file,
                         RawImageWriter::Create(saveset.Describe(name), size));
    return std::unique_ptr<RawTarget>(new SparseFileTarget(std::move(file)));
  }
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> out, saveset.Create(name));
  return std::unique_ptr<RawTarget>(new ObjectTarget(std::move(out), size));
}

}  // namespace backupfs
