#include "common/raw_image.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace backupfs {

namespace {

std::string Partial(const std::string& path) { return path + ".partial"; }

}  // namespace

Result<std::unique_ptr<RawImageWriter>> RawImageWriter::Create(const std::string& path,
                                                               uint64_t size) {
  const std::string partial = Partial(path);
  UniqueFd fd(open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640));
  if (!fd.valid()) return Status::FromErrno("cannot create " + partial, errno);
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    Status s = Status::FromErrno("cannot size " + partial, errno);
    unlink(partial.c_str());
    return s;
  }
  return std::unique_ptr<RawImageWriter>(new RawImageWriter(path, std::move(fd), size));
}

RawImageWriter::~RawImageWriter() {
  if (!finished_) unlink(Partial(path_).c_str());
}

Status RawImageWriter::Write(uint64_t offset, std::span<const uint8_t> bytes) {
  if (offset > size_ || bytes.size() > size_ - offset) {
    return Status::InvalidArgument("write at " + std::to_string(offset) + " past the end of " +
                                   Partial(path_));
  }
  BFS_RETURN_IF_ERROR(PwriteAll(fd_.get(), bytes, offset, Partial(path_)));
  written_ += bytes.size();
  return Status::Ok();
}

Status RawImageWriter::Zero(unsigned, uint64_t offset, uint64_t length) {
  // The file was created sparse; punching keeps a rewritten range thin all the same.
  if (fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                static_cast<off_t>(length)) != 0) {
    return Status::FromErrno(
        "cannot punch a hole in " + Partial(path_) + " at offset " + std::to_string(offset), errno);
  }
  return Status::Ok();
}

Status RawImageWriter::Finish() {
  const std::string partial = Partial(path_);
  if (fsync(fd_.get()) != 0) return Status::FromErrno("cannot fsync " + partial, errno);
  fd_.reset();
  if (rename(partial.c_str(), path_.c_str()) != 0) {
    return Status::FromErrno("cannot rename " + partial, errno);
  }
  finished_ = true;
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  UniqueFd d(open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.valid() || fsync(d.get()) != 0) return Status::FromErrno("cannot fsync " + dir, errno);
  return Status::Ok();
}

}  // namespace backupfs
