// A sparse raw image written from a backup's data extents (-t raw): `<path>.partial` while
// written, fsynced, renamed into place and the directory fsynced, as the stream writer does.
// Holes and zero extents are never written (the file is created at its full size, so they
// read as zeros and take no space). Destroyed unfinished, it removes the partial file.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "stream/file.h"
#include "stream/status.h"

namespace backupfs {

class RawImageWriter {
 public:
  static Result<std::unique_ptr<RawImageWriter>> Create(const std::string& path, uint64_t size);
  ~RawImageWriter();
  RawImageWriter(const RawImageWriter&) = delete;
  RawImageWriter& operator=(const RawImageWriter&) = delete;

  Status Write(uint64_t offset, std::span<const uint8_t> bytes);
  Status Finish();
  uint64_t bytes_written() const { return written_; }

 private:
  RawImageWriter(std::string path, UniqueFd fd, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
  uint64_t written_ = 0;
  bool finished_ = false;
};

}  // namespace backupfs
