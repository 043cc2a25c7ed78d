// File handles and the read-only byte source the stream parsers work on.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stream/status.h"

namespace backupfs {

// Owns one file descriptor; move-only, closes on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release();
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Opens with O_CLOEXEC; the error names the path.
Result<UniqueFd> OpenFile(const std::string& path, int flags, int mode = 0);
// Writes all of `bytes` (retrying short writes and EINTR).
Status WriteAll(int fd, std::span<const uint8_t> bytes, const std::string& name);
// Writes all of `bytes` at `offset` (retrying short writes and EINTR); the error names `name`
// and the offset. A write that makes no progress is ENOSPC.
Status PwriteAll(int fd, std::span<const uint8_t> bytes, uint64_t offset, const std::string& name);
// Reads exactly out.size() bytes at `offset`; a short read (end of file) is Corruption.
Status PreadExact(int fd, std::span<uint8_t> out, uint64_t offset, const std::string& name);
Status FsyncFile(int fd, const std::string& name);
// fsync of the directory that holds `path`, so that a rename in it is durable.
Status FsyncParentDir(const std::string& path);
Result<std::string> ReadWholeFile(const std::string& path);
// Writes `contents` to path.tmp, fsyncs (when `durable`) and renames over `path`.
Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> contents,
                           int mode = 0644, bool durable = true);
inline Status WriteTextAtomically(const std::string& path, std::string_view text) {
  return WriteFileAtomically(path,
                             std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// Random-access, read-only bytes: a file, a memory buffer, a restore point's disk image, a
// partition of one (guest/byte_source.h). Thread-safe for concurrent reads.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Exactly out.size() bytes at offset; reading past the end is Corruption naming name().
  virtual Status ReadAt(uint64_t offset, std::span<uint8_t> out) const = 0;
  // For messages: the file name, or what the bytes are ("vda at virtnbdbackup.2").
  virtual const std::string& name() const = 0;
  // SEEK_DATA / SEEK_HOLE: the first data (hole) offset at or after `offset`. NextData returns
  // size() when no data follows, NextHole size() when only data does. By default all is data.
  virtual uint64_t NextData(uint64_t offset) const { return offset; }
  virtual uint64_t NextHole(uint64_t) const { return size(); }
};

class FileSource final : public ByteSource {
 public:
  static Result<FileSource> Open(const std::string& path);
  uint64_t size() const override { return static_cast<uint64_t>(stat_.st_size); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return path_; }
  int fd() const { return fd_.get(); }
  const struct stat& status() const { return stat_; }  // as opened

 private:
  FileSource(UniqueFd fd, std::string path, const struct stat& st)
      : fd_(std::move(fd)), path_(std::move(path)), stat_(st) {}
  UniqueFd fd_;
  std::string path_;
  struct stat stat_;
};

// Views bytes owned by the caller, who keeps them alive and unchanged.
class MemorySource final : public ByteSource {
 public:
  MemorySource(std::span<const uint8_t> bytes, std::string name)
      : bytes_(bytes), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return name_; }

 private:
  std::span<const uint8_t> bytes_;
  std::string name_;
};

}  // namespace backupfs
