// The JSON payload of the `meta` frame that starts every stream.
#pragma once

#include <cstdint>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "stream/status.h"

namespace backupfs {

struct StreamMetadata {
  uint64_t virtual_size = 0;  // virtualSize: size of the disk at this backup
  uint64_t data_size = 0;     // dataSize: sum of the data frames' (uncompressed) lengths
  std::string date;           // date: ISO 8601, local time, no zone
  std::string disk_name;      // diskName: target dev, e.g. "vda"
  std::string disk_format;    // diskFormat: e.g. "qcow2"
  std::string checkpoint_name;
  std::string parent_checkpoint;  // "" for none
  bool incremental = false;       // true for inc and diff
  // compressed: nullopt for false; the lz4 level otherwise (0 when a stream says just `true`).
  std::optional<int> compression_level;
  std::string compression_method = "lz4";
  int stream_version = 2;
  // Every key as read, unknown ones included, in file order (for dump).
  nlohmann::ordered_json raw;

  bool compressed() const { return compression_level.has_value(); }
};

// The metadata's date, "2026-11-26T05:00:00.123456" (local time, no zone, as virtnbdbackup
// writes it) -> time; {0, 0} when it does not parse.
struct timespec ParseMetadataDate(const std::string& iso);

// The pretty-printed JSON virtnbdbackup writes (keys in its order, 4-space indent).
std::string EncodeMetadata(const StreamMetadata& meta);

// Parses version 1 (`stream-version`, no compression keys) and version 2 metadata. Unknown keys
// are ignored; a missing or mistyped key we need is Corruption naming `file`, `offset` and the key.
Result<StreamMetadata> DecodeMetadata(std::string_view json, const std::string& file,
                                      uint64_t offset);

}  // namespace backupfs
