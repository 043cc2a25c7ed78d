// A local directory that keeps blobs (fetched ranges of remote files, indexes built by
// scanning them) across runs, within a size bound: the least recently used go first. Keys are
// opaque strings (a store's URL, version and block number); a blob is written to a temporary
// name and renamed, so a crash leaves no torn entry, and one whose recorded length or
// checksum does not match is dropped, never returned. Several processes may share one
// directory. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "stream/status.h"

namespace backupfs {

class DiskCache {
 public:
  // Creates `dir` when needed.
  static Result<std::shared_ptr<DiskCache>> Open(const std::string& dir, uint64_t max_bytes);
  virtual ~DiskCache() = default;
  virtual Result<std::optional<std::string>> Get(std::string_view key) = 0;
  // Errors (a full disk) are reported but callers may ignore them: the cache is an optimization.
  virtual Status Put(std::string_view key, std::span<const uint8_t> bytes) = 0;
  virtual const std::string& dir() const = 0;
};

}  // namespace backupfs
