// Pipelined NBD reads of the data extents of a backup, delivered in offset order.
//
// One connection, many requests in flight (libnbd's asynchronous API): the measurements in
// notes/ENVIRONMENT.md show no gain beyond one connection and 16 requests for dense reads, and
// scattered small extents are latency bound, so the window stays full across extent
// boundaries. The reads run on a thread of their own so replies keep arriving while the
// consumer writes; the consumer runs on the caller's thread. The source must not be used by
// anyone else during a copy.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "capture/extents.h"
#include "capture/nbd_source.h"
#include "stream/status.h"
#include "stream/writer.h"

namespace backupfs {

struct CopyOptions {
  // Bytes per NBD read (clipped to the server's maximum). 256 KiB (nbdcopy's default too)
  // measured fastest against qemu-nbd here; 4 MiB reads were 2-3x slower on a dense disk.
  uint64_t request_size = 256u << 10;
  unsigned window = 16;  // reads in flight at most; each owns a buffer of request_size bytes
  // Asked before every delivery; true stops the copy with a Cancelled status. May be empty.
  std::function<bool()> cancelled;
  // Told the size of every piece delivered (progress); may be empty.
  std::function<void(uint64_t bytes)> delivered;
};

// Receives the bytes read at `offset`. Called on the caller's thread, in strictly ascending
// offset order; `bytes` is valid only during the call. A non-OK Status stops the copy.
using ChunkConsumer = std::function<Status(uint64_t offset, std::span<const uint8_t> bytes)>;

// Reads every kData extent of `frames` (sorted, non-overlapping, inside the export) and hands
// the bytes to `consume` in offset order, each extent in pieces of at most request_size.
// Other kinds are skipped. Returns the first failure: a read (naming export, offset and the
// errno text), or the consumer's Status. In-flight reads are drained before returning.
Status ReadExtents(NbdSource& source, std::span<const Extent> frames, const CopyOptions& options,
                   const ChunkConsumer& consume);

// Writes `frames` into `writer`: data frames with the bytes read from the source, kZero as
// zero frames; kHole writes nothing. The writer's metadata must announce DataBytes(frames).
// Does not call writer.Finish().
Status CopyToStream(NbdSource& source, std::span<const Extent> frames, StreamWriter& writer,
                    const CopyOptions& options = {});

}  // namespace backupfs
