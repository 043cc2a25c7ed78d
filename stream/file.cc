#include "stream/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace backupfs {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int UniqueFd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> OpenFile(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    int err = errno;
    Status s = Status::FromErrno("cannot open " + path, err);
    if (err == ENOENT) return Status::NotFound(s.message());
    return s;
  }
  return UniqueFd(fd);
}

Status WriteAll(int fd, std::span<const uint8_t> bytes, const std::string& name) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("cannot write " + name, errno);
    }
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status PwriteAll(int fd, std::span<const uint8_t> bytes, uint64_t offset, const std::string& name) {
  for (uint64_t done = 0; done < bytes.size();) {
    ssize_t n =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::FromErrno(
          "cannot write " + name + " at offset " + std::to_string(offset + done),
          n < 0 ? errno : ENOSPC);
    }
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status PreadExact(int fd, std::span<uint8_t> out, uint64_t offset, const std::string& name) {
  uint64_t pos = offset;
  while (!out.empty()) {
    ssize_t n = ::pread(fd, out.data(), out.size(), static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(name + ": cannot read at offset " + std::to_string(pos), errno);
    }
    if (n == 0) {
      return Status::Corruption(name + ": offset " + std::to_string(pos) +
                                ": unexpected end of file");
    }
    out = out.subspan(static_cast<size_t>(n));
    pos += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status FsyncFile(int fd, const std::string& name) {
  if (::fsync(fd) != 0) return Status::FromErrno("cannot fsync " + name, errno);
  return Status::Ok();
}

Status FsyncParentDir(const std::string& path) {
  // (Not `if (dir.empty()) dir = "."`: GCC 12 -O3 reports a false -Wrestrict on it.)
  const std::string parent = std::filesystem::path(path).parent_path().string();
  const std::string dir = parent.empty() ? std::string(".") : parent;
  BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  return FsyncFile(fd.get(), dir);
}

Result<std::string> ReadWholeFile(const std::string& path) {
  BFS_ASSIGN_OR_RETURN(FileSource src, FileSource::Open(path));
  std::string out(src.size(), '\0');
  BFS_RETURN_IF_ERROR(src.ReadAt(0, std::span(reinterpret_cast<uint8_t*>(out.data()), out.size())));
  return out;
}

Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> contents, int mode,
                           bool durable) {
  const std::string tmp = path + ".tmp";
  {
    BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode));
    Status s = WriteAll(fd.get(), contents, tmp);
    if (s.ok() && durable) s = FsyncFile(fd.get(), tmp);
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno("cannot rename " + tmp + " to " + path, err);
  }
  return Status::Ok();
}

Result<FileSource> FileSource::Open(const std::string& path) {
  // O_NONBLOCK so that a FIFO (or device) with a data file's name cannot hang the open.
  BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY | O_NONBLOCK));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("cannot stat " + path, errno);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + ": not a regular file");
  if (::fcntl(fd.get(), F_SETFL, 0) != 0) return Status::FromErrno("cannot fcntl " + path, errno);
  return FileSource(std::move(fd), path, st);
}

Status FileSource::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size() || out.size() > size() - offset) {
    return Status::Corruption(path_ + ": offset " + std::to_string(offset) + ": " +
                              std::to_string(out.size()) + " bytes past the end of the file (" +
                              std::to_string(size()) + " bytes)");
  }
  return PreadExact(fd_.get(), out, offset, path_);
}

Status MemorySource::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > bytes_.size() || out.size() > bytes_.size() - offset) {
    return Status::Corruption(name_ + ": offset " + std::to_string(offset) + ": " +
                              std::to_string(out.size()) + " bytes past the end of the file (" +
                              std::to_string(bytes_.size()) + " bytes)");
  }
  std::memcpy(out.data(), bytes_.data() + offset, out.size());
  return Status::Ok();
}

}  // namespace backupfs
