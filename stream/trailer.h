// The compression trailer of an lz4-compressed stream: after the `stop` frame, a JSON list with
// one entry per data frame, CR LF, and a `comp 0 LEN` header as the last 40 bytes of the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

// The compressed sizes of one data frame's lz4 frames ("chunks").
struct TrailerEntry {
  std::vector<uint64_t> chunk_sizes;
  // Written as {"TOTAL": [c1, c2, ...]} rather than a bare integer. virtnbdbackup does this for
  // frames it read in several requests; readers must branch on the JSON type, not on a size.
  bool split = false;

  // The sum of chunk_sizes; UINT64_MAX when it overflows (DecodeTrailer rejects that).
  uint64_t total() const;
  bool operator==(const TrailerEntry&) const = default;
};

// JSON text as Python's json.dumps writes it: [123, {"456": [200, 256]}].
std::string EncodeTrailer(const std::vector<TrailerEntry>& entries);

// Parses the JSON list; any other shape, a negative size, or a TOTAL that is not the sum of its
// chunks is Corruption naming `file` and `offset`.
Result<std::vector<TrailerEntry>> DecodeTrailer(std::string_view json, const std::string& file,
                                                uint64_t offset);

}  // namespace backupfs
