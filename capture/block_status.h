// The allocation map and dirty ranges of a whole NBD export, from NBD_CMD_BLOCK_STATUS.
#pragma once

#include <cstdint>

#include "capture/extents.h"
#include "capture/nbd_source.h"
#include "stream/status.h"

namespace backupfs {

struct BlockStatusMaps {
  // base:allocation over the whole export (empty when the source did not request it).
  ExtentList allocation;
  // The dirty ranges of the source's dirty context (empty when it has none).
  RangeList dirty;
};

// Bytes asked for per NBD_CMD_BLOCK_STATUS; servers may answer for less, and we ask again.
inline constexpr uint64_t kBlockStatusRequest = 2ull << 30;
// Block status queries in flight at most (over a network, each is a round trip).
inline constexpr size_t kBlockStatusWindow = 16;

// Queries every meta context the source negotiated, from offset 0 to source.size(), with up
// to kBlockStatusWindow queries in flight. The source must not be used by anyone else meanwhile.
// A reply that is empty, out of order or for an unknown context is an IOError naming the
// export and offset.
Result<BlockStatusMaps> QueryBlockStatus(NbdSource& source, uint64_t request = kBlockStatusRequest);

}  // namespace backupfs
