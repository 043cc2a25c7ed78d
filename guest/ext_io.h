// The bridge between libext2fs and a ByteSource: a read-only io_manager whose channels read a
// ByteSource through a bounded block cache, and a source that lays replayed journal blocks over
// a device.
//
// libext2fs opens a channel from a name only (io_manager->open(name, ...)). ExtIoRegistration
// puts a source in a process-wide, mutex-guarded registry under a unique name
// ("bfs-ext:<n>"); the channel's open looks it up and keeps its own shared_ptr, so the
// registration only has to live until ext2fs_open2 returns. Names are never reused.
#pragma once

#include <ext2fs/ext2fs.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "guest/byte_source.h"
#include "stream/status.h"

namespace backupfs {

// What a channel reads, and the detail of its last failed read (libext2fs only passes an
// errcode up; ExtFs appends this text to its messages).
class ExtIoTarget {
 public:
  explicit ExtIoTarget(std::shared_ptr<const ByteSource> source) : source_(std::move(source)) {}
  const ByteSource& source() const { return *source_; }
  void SetLastError(std::string text) EXCLUDES(mu_);
  // The detail of the last failed read, cleared.
  std::string TakeLastError() EXCLUDES(mu_);

 private:
  const std::shared_ptr<const ByteSource> source_;
  Mutex mu_;
  std::string last_error_ GUARDED_BY(mu_);
};

// Registers a target for the lifetime of this object; name() is what ext2fs_open2 takes.
class ExtIoRegistration {
 public:
  explicit ExtIoRegistration(std::shared_ptr<ExtIoTarget> target);
  ~ExtIoRegistration();
  ExtIoRegistration(const ExtIoRegistration&) = delete;
  ExtIoRegistration& operator=(const ExtIoRegistration&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

// The read-only manager: writes fail with EXT2_ET_RO_FILSYS; a read past the source's end
// fails (EXT2_ET_SHORT_READ) and never returns bytes from elsewhere. Each channel caches up to
// 16 MiB of the source in 64 KiB-aligned chunks (LRU), since libext2fs reads metadata one
// block at a time.
io_manager ExtIoManager();

// libext2fs's text for an errcode (its own table, else strerror).
std::string ExtErrorText(errcode_t err);

// `base` with whole blocks replaced (journal recovery): block number -> block_size bytes.
class BlockOverlaySource final : public ByteSource {
 public:
  BlockOverlaySource(std::shared_ptr<const ByteSource> base,
                     std::map<uint64_t, std::vector<uint8_t>> blocks, uint32_t block_size);
  uint64_t size() const override { return base_->size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override;
  const std::string& name() const override { return base_->name(); }
  // NextData/NextHole: the default (all data), since a replayed block may fill a base hole.

 private:
  const std::shared_ptr<const ByteSource> base_;
  const std::map<uint64_t, std::vector<uint8_t>> blocks_;
  const uint32_t block_size_;
};

}  // namespace backupfs
