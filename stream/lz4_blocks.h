// The blocks inside one LZ4 frame (lz4 frame format 1.6.x), for reads that decode one block
// instead of the whole frame.
//
// A frame is a header, then blocks (a 4-byte little-endian size whose high bit marks a block
// stored uncompressed, the block, and a 4-byte xxh32 of the stored block when the frame has
// block checksums), then a zero size (the end mark) and an xxh32 of the content when the frame
// has a content checksum. Every block expands to at most the frame's block maximum size.
//
// WalkLz4Frame finds the blocks from their 4-byte headers alone (one small read per block). It
// cannot know where a compressed block's bytes land in the content without decoding it: it
// assumes what every lz4 compressor we know writes (lz4's LZ4F_compressFrame, which python's
// lz4.frame.compress() and our writer use): every block full but the last. Callers that cannot
// vouch for the producer learn the true layout with DecodeLz4Frame instead.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

struct Lz4Block {
  uint64_t stored_offset = 0;   // of the block's bytes (after its size), from the frame start
  uint32_t stored_size = 0;     // bytes stored (without the size and the checksum)
  bool raw = false;             // stored uncompressed: the stored bytes are the content
  uint64_t content_offset = 0;  // where its content starts in the frame's content
  uint32_t content_size = 0;    // bytes of content (see the header comment)
  uint32_t checksum = 0;        // xxh32 of the stored bytes, when the frame has block checksums

  uint64_t content_end() const { return content_offset + content_size; }
};

struct Lz4FrameLayout {
  uint32_t block_max = 0;  // 64 KiB, 256 KiB, 1 MiB or 4 MiB
  bool linked = false;     // a block may refer to the 64 KiB of content before it
  bool block_checksums = false;
  bool content_checksum = false;
  uint32_t content_xxh32 = 0;  // when content_checksum
  uint64_t content_size = 0;   // the frame's content size (the caller's, checked if recorded)
  std::vector<Lz4Block> blocks;

  // The index of the block holding content offset `offset` (< content_size).
  size_t BlockAt(uint64_t offset) const;
};

// Reads `out.size()` bytes at `offset` of the stored frame.
using FrameReadFn = std::function<Status(uint64_t offset, std::span<uint8_t> out)>;

// Walks the frame of `frame_size` stored bytes that must expand to `content_size` bytes, with
// content offsets as LZ4F_compressFrame lays them out (every block full but the last). Reads
// each block's size and checksum, never its bytes. Corruption naming `what` and the offset in
// the frame when the frame is malformed, ends early or late, or its block count cannot hold
// `content_size` bytes; InvalidArgument for frames this reader does not split (a dictionary ID).
Result<Lz4FrameLayout> WalkLz4Frame(const FrameReadFn& read, uint64_t frame_size,
                                    uint64_t content_size, const std::string& what);

// Checks a stored block against its lz4 block checksum (when the frame has them).
Status CheckLz4Block(const Lz4FrameLayout& layout, const Lz4Block& block,
                     std::span<const uint8_t> stored, const std::string& what);

// Decodes one block from its stored bytes into `out`, which must be exactly the block's
// content size; `dict` is the content just before the block (linked frames; at most the last
// 64 KiB of it is used; empty for the first block of a frame and for independent frames).
// Corruption naming `what` and the block's offset when the block does not decode to exactly
// out.size() bytes.
Status DecodeLz4Block(const Lz4Block& block, std::span<const uint8_t> stored,
                      std::span<const uint8_t> dict, std::span<uint8_t> out,
                      const std::string& what);

// A range [begin, end) of offsets into the window before a block.
struct WindowRange {
  uint32_t begin = 0;
  uint32_t end = 0;
};

// The parts of the `window` bytes of content before a linked block (at most 64 KiB) that the
// block's matches read, sorted and merged: the rest of the window never reaches the block's
// content, so a decode with only these bytes in place (the others anything) gives the same
// content. `stored` is the block as stored (compressed; the caller has checked it: it must
// have decoded). Corruption naming `what` when the block's sequences are malformed.
Result<std::vector<WindowRange>> Lz4WindowReferences(std::span<const uint8_t> stored,
                                                     uint32_t window, const std::string& what);

// Decodes a whole frame (`stored` holds all of it) into `out`, exactly the frame's content size,
// block after block, learning the true content offset and size of every block: the layout
// returned is exact whatever the producer. With `verify`, the content checksum is checked
// (block checksums only when the frame has no content checksum: it covers them). Corruption names
// `what` and the offset in the frame.
Result<Lz4FrameLayout> DecodeLz4Frame(std::span<const uint8_t> stored, std::span<uint8_t> out,
                                      bool verify, const std::string& what);

// Decodes a whole frame (`stored` holds all of it, expanding to `content_size` bytes) block by
// block into separate buffers: `out(i, room)` gives block i's buffer of at least `room` bytes
// (the frame's block maximum, or the content left if less); `done(i, content)` sees the block's
// content right after it decoded (while it is in the CPU cache: hash it there). A linked
// block's dictionary is the last 64 KiB of the block before it, so every block but the last of
// a linked frame must expand to at least 64 KiB: InvalidArgument (nothing is wrong with the
// frame) when one does not, and for frames this reader does not split (a dictionary ID); then
// decode with DecodeLz4Frame. The content checksum is always checked (streamed over each block
// after `done`), block checksums when the frame has no content checksum: Corruption names `what`
// and the offset in the frame, and the caller must not use the blocks then. The layout is exact.
using Lz4BlockOutFn = std::function<std::span<uint8_t>(size_t i, size_t room)>;
using Lz4BlockDoneFn = std::function<void(size_t i, std::span<const uint8_t> content)>;
Result<Lz4FrameLayout> DecodeLz4FrameInBlocks(std::span<const uint8_t> stored,
                                              uint64_t content_size, const Lz4BlockOutFn& out,
                                              const Lz4BlockDoneFn& done, const std::string& what);

}  // namespace backupfs
