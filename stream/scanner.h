// Walks a data file's frame headers without reading payloads: the layout of a stream in time
// proportional to its number of frames. Used to dump a stream, to check its structure, and to
// build the chunk index of a file that has no sidecar.
#pragma once

#include <cstdint>
#include <vector>

#include "stream/file.h"
#include "stream/frame.h"
#include "stream/index.h"
#include "stream/metadata.h"
#include "stream/status.h"
#include "stream/trailer.h"

namespace backupfs {

// A data or zero frame and where it lies in the file.
struct FrameRecord {
  FrameHeader header;
  uint64_t header_offset = 0;
  uint64_t payload_offset = 0;  // data frames: first payload byte
  uint64_t stored_size = 0;     // data frames: payload bytes in the file (compressed size)
  // Compressed data frames: each lz4 frame's compressed and uncompressed size.
  std::vector<uint64_t> chunk_stored;
  std::vector<uint64_t> chunk_lengths;
};

struct StreamLayout {
  StreamMetadata meta;
  uint64_t file_size = 0;
  uint64_t payload_begin = 0;  // first byte after the meta frame
  uint64_t stop_offset = 0;    // offset of the `stop` frame header
  std::vector<FrameRecord> frames;
  std::vector<TrailerEntry> trailer;  // compressed streams only
};

// Where the frames end: the offset of the `stop` header, found from the file's tail alone
// (the last 40 bytes; for compressed streams the `comp` header locates the trailer).
Result<uint64_t> FramesEnd(const ByteSource& src, const StreamMetadata& meta,
                           uint64_t payload_begin);

// Reads just the meta frame at the start of `src`.
Result<StreamMetadata> ReadMetadata(const ByteSource& src, uint64_t* payload_begin = nullptr);

// Every structural rule of the format is checked: kinds, hex, terminators, ascending and
// non-overlapping frames inside the disk, data sizes against the metadata and the trailer,
// the stop frame where the file ends. Errors are Corruption naming the file and byte offset.
Result<StreamLayout> ScanStream(const ByteSource& src);

// The chunk index that a scan gives: one chunk per uncompressed data frame, per lz4 frame, or
// per zero frame, without checksums (lz4 frames carry their own).
StreamIndex IndexFromLayout(const StreamLayout& layout, const DataFileIdentity& identity);

}  // namespace backupfs

namespace backupfs {

// Checks that a sidecar index describes exactly the frames a scan found: every frame covered
// by its chunks, contiguously, with the same kind and stored bytes. The stream format does not
// protect its headers; this comparison is what catches a header damaged in place.
Status CheckIndexMatchesLayout(const StreamIndex& index, const StreamLayout& layout,
                               const std::string& file);

}  // namespace backupfs
