// Pipelined NBD reads of the data extents of a backup, delivered in offset order.
//
// Many requests in flight (libnbd's asynchronous API), the window kept full across extent
// boundaries, so scattered small extents are not paid one round trip each. On a unix socket
// one connection and 16 reads measured as fast as anything (notes/ENVIRONMENT.md). Over TCP
// each read costs a network round trip: there the window and the read buffers grow to cover
// the bandwidth-delay product, and the reads are spread over several connections when the
// server allows multi-conn (the extra connections shake hands while the first one already
// reads). One I/O thread drives every connection, so replies keep arriving while the
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

// Over TCP: 10 ms of round trip at ~3 GB/s, and enough small reads in flight that a
// scattered incremental is bound by bandwidth (see bench/RESULTS-nbd-latency.md).
inline constexpr unsigned kUnixWindow = 16;
inline constexpr unsigned kTcpWindow = 256;
inline constexpr unsigned kTcpConnections = 4;
inline constexpr uint64_t kTcpBufferBytes = 32u << 20;

struct CopyOptions {
  // Bytes per NBD read (clipped to the server's maximum). 256 KiB (nbdcopy's default too)
  // measured fastest against qemu-nbd here; 4 MiB reads were 2-3x slower on a dense disk.
  uint64_t request_size = 256u << 10;
  // Reads in flight at most, over all connections. 0: automatic (kUnixWindow on a unix
  // socket, kTcpWindow over TCP).
  unsigned window = 0;
  // Connections to read over, `source` included. The others are opened from
  // source.options() (so they go to its park too) for the copy's duration, and only when the
  // server allows multi-conn; otherwise one. 0: automatic (1 on a unix socket,
  // kTcpConnections over TCP).
  unsigned connections = 0;
  // Bytes of read buffers at most: reads in flight plus reads not yet delivered. 0: automatic
  // (window * request_size on a unix socket, kTcpBufferBytes over TCP). At least one request.
  uint64_t buffer_bytes = 0;
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
// errno text), or the consumer's Status. In-flight reads are drained before returning. A
// connection that fails ends the copy with an error naming the export and the offset read.
Status ReadExtents(NbdSource& source, std::span<const Extent> frames, const CopyOptions& options,
                   const ChunkConsumer& consume);

// Writes `frames` into `writer`: data frames with the bytes read from the source, kZero as
// zero frames; kHole writes nothing. The writer's metadata must announce DataBytes(frames).
// Does not call writer.Finish().
Status CopyToStream(NbdSource& source, std::span<const Extent> frames, StreamWriter& writer,
                    const CopyOptions& options = {});

}  // namespace backupfs
