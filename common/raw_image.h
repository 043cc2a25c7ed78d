// A sparse raw image written from a backup's data extents (capture's -t raw, restore's raw
// output): `<path>.partial` while written, fsynced, renamed into place and the directory
// fsynced, as the stream writer does. Holes and zero extents are never written (the file is
// created at its full size, so they read as zeros and take no space). Destroyed unfinished, it
// removes the partial file. Writes may run from several threads at once (pwrite).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/image_writer.h"
#include "stream/file.h"
#include "stream/status.h"

namespace backupfs {

class RawImageWriter final : public ImageWriter {
 public:
  static Result<std::unique_ptr<RawImageWriter>> Create(const std::string& path, uint64_t size);
  ~RawImageWriter();
  RawImageWriter(const RawImageWriter&) = delete;
  RawImageWriter& operator=(const RawImageWriter&) = delete;

  Status Write(uint64_t offset, std::span<const uint8_t> bytes);
  uint64_t bytes_written() const { return written_; }

  unsigned lanes() const override { return 8; }
  Status Write(unsigned, uint64_t offset, std::span<const uint8_t> bytes) override {
    return Write(offset, bytes);
  }
  Status Zero(unsigned lane, uint64_t offset, uint64_t length) override;
  bool zeroed_at_start() const override { return true; }
  Status Finish() override;
  const std::string& path() const override { return path_; }

 private:
  RawImageWriter(std::string path, UniqueFd fd, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
  std::atomic<uint64_t> written_{0};
  bool finished_ = false;
};

}  // namespace backupfs
