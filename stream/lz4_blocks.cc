#include "stream/lz4_blocks.h"

#include <lz4.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>

namespace backupfs {
namespace {

constexpr uint32_t kMagic = 0x184D2204;
constexpr size_t kMaxHeader = 19;
constexpr uint32_t kRawBit = 0x80000000u;
constexpr uint32_t kWindow = 64 * 1024;  // how far back an lz4 match can reach

uint32_t Get32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

Status BadAt(const std::string& what, uint64_t offset, const std::string& why) {
  return Status::Corruption(what + ": lz4 frame offset " + std::to_string(offset) + ": " + why);
}

// Parses the frame header in `h` (the frame's first bytes, at most kMaxHeader); returns its size.
Result<size_t> ParseHeader(std::span<const uint8_t> h, Lz4FrameLayout* layout,
                           uint64_t* recorded_size, const std::string& what) {
  if (h.size() < 7) return BadAt(what, h.size(), "frame header is truncated");
  if (Get32(h.data()) != kMagic) return BadAt(what, 0, "not an lz4 frame (bad magic number)");
  const uint8_t flg = h[4], bd = h[5];
  if ((flg >> 6) != 1 || (flg & 0x02) != 0 || (bd & 0x8f) != 0 || ((bd >> 4) & 7) < 4) {
    return BadAt(what, 4, "unsupported lz4 frame descriptor");
  }
  if (flg & 0x01) return Status::InvalidArgument(what + ": lz4 frame needs a dictionary");
  layout->linked = (flg & 0x20) == 0;
  layout->block_checksums = (flg & 0x10) != 0;
  layout->content_checksum = (flg & 0x04) != 0;
  layout->block_max = 1u << (8 + 2 * ((bd >> 4) & 7));
  size_t size = 6;
  *recorded_size = UINT64_MAX;
  if (flg & 0x08) {
    if (h.size() < 15) return BadAt(what, h.size(), "frame header is truncated");
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | h[6 + i];
    *recorded_size = v;
    size += 8;
  }
  if (h.size() < size + 1) return BadAt(what, h.size(), "frame header is truncated");
  if (((XXH32(h.data() + 4, size - 4, 0) >> 8) & 0xff) != h[size]) {
    return BadAt(what, size, "frame header checksum mismatch");
  }
  return size + 1;
}

// Reads the frame header through `read` and parses it.
Result<size_t> ReadHeader(const FrameReadFn& read, uint64_t frame_size, Lz4FrameLayout* layout,
                          uint64_t content_size, const std::string& what) {
  uint8_t h[kMaxHeader];
  const size_t n = static_cast<size_t>(std::min<uint64_t>(frame_size, kMaxHeader));
  BFS_RETURN_IF_ERROR(read(0, std::span(h, n)));
  uint64_t recorded = 0;
  BFS_ASSIGN_OR_RETURN(size_t size, ParseHeader(std::span(h, n), layout, &recorded, what));
  if (recorded != UINT64_MAX && recorded != content_size) {
    return BadAt(what, 6,
                 "frame records " + std::to_string(recorded) + " bytes of content, expected " +
                     std::to_string(content_size));
  }
  layout->content_size = content_size;
  return size;
}

// The walk of WalkLz4Frame; without `regular`, content offsets and sizes are left for the
// decoder to learn, and any block count up to one block per content byte is accepted.
Result<Lz4FrameLayout> Walk(const FrameReadFn& read, uint64_t frame_size, uint64_t content_size,
                            const std::string& what, bool regular);

}  // namespace

size_t Lz4FrameLayout::BlockAt(uint64_t offset) const {
  auto it = std::upper_bound(blocks.begin(), blocks.end(), offset,
                             [](uint64_t off, const Lz4Block& b) { return off < b.content_end(); });
  return static_cast<size_t>(it - blocks.begin());
}

Result<Lz4FrameLayout> WalkLz4Frame(const FrameReadFn& read, uint64_t frame_size,
                                    uint64_t content_size, const std::string& what) {
  return Walk(read, frame_size, content_size, what, /*regular=*/true);
}

namespace {
Result<Lz4FrameLayout> Walk(const FrameReadFn& read, uint64_t frame_size, uint64_t content_size,
                            const std::string& what, bool regular) {
  Lz4FrameLayout layout;
  BFS_ASSIGN_OR_RETURN(uint64_t pos, ReadHeader(read, frame_size, &layout, content_size, what));
  const uint64_t want =
      regular ? (content_size + layout.block_max - 1) / layout.block_max : content_size;
  const uint64_t trailer = layout.block_checksums ? 4 : 0;
  uint64_t content = 0;
  for (;;) {
    uint8_t word[8];
    const size_t n = layout.block_checksums ? 8 : 4;
    if (frame_size - pos < 4) return BadAt(what, pos, "frame is truncated (no end mark)");
    BFS_RETURN_IF_ERROR(read(pos, std::span(word, std::min<uint64_t>(n, frame_size - pos))));
    const uint32_t v = Get32(word);
    if (v == 0) {
      pos += 4;
      break;
    }
    Lz4Block b;
    b.raw = (v & kRawBit) != 0;
    b.stored_size = v & ~kRawBit;
    b.stored_offset = pos + 4;
    if (b.stored_size > layout.block_max || (b.raw && b.stored_size == 0)) {
      return BadAt(what, pos, "block size " + std::to_string(b.stored_size) + " is impossible");
    }
    if (b.stored_size + trailer > frame_size - b.stored_offset) {
      return BadAt(what, pos, "block runs past the end of the frame");
    }
    if (layout.blocks.size() == want) {
      return BadAt(what, pos, "more blocks than " + std::to_string(content_size) + " bytes need");
    }
    if (regular) {
      b.content_offset = content;
      b.content_size =
          static_cast<uint32_t>(std::min<uint64_t>(layout.block_max, content_size - content));
    }
    if (regular && b.raw && b.stored_size != b.content_size) {
      return BadAt(what, pos,
                   "uncompressed block of " + std::to_string(b.stored_size) + " bytes where " +
                       std::to_string(b.content_size) + " belong");
    }
    if (layout.block_checksums) {
      uint8_t sum[4];
      BFS_RETURN_IF_ERROR(read(b.stored_offset + b.stored_size, sum));
      b.checksum = Get32(sum);
    }
    content += b.content_size;
    layout.blocks.push_back(b);
    pos = b.stored_offset + b.stored_size + trailer;
  }
  if (regular && layout.blocks.size() != want) {
    return BadAt(what, pos,
                 "frame ends after " + std::to_string(layout.blocks.size()) + " blocks, " +
                     std::to_string(content_size) + " bytes need " + std::to_string(want));
  }
  if (layout.content_checksum) {
    uint8_t sum[4];
    if (frame_size - pos < 4) return BadAt(what, pos, "frame is truncated (no content checksum)");
    BFS_RETURN_IF_ERROR(read(pos, sum));
    layout.content_xxh32 = Get32(sum);
    pos += 4;
  }
  if (pos != frame_size) {
    return BadAt(what, pos, std::to_string(frame_size - pos) + " stray bytes after the frame");
  }
  return layout;
}
}  // namespace

Status CheckLz4Block(const Lz4FrameLayout& layout, const Lz4Block& block,
                     std::span<const uint8_t> stored, const std::string& what) {
  if (layout.block_checksums && XXH32(stored.data(), stored.size(), 0) != block.checksum) {
    return BadAt(what, block.stored_offset - 4, "block checksum mismatch");
  }
  return Status::Ok();
}

Status DecodeLz4Block(const Lz4Block& block, std::span<const uint8_t> stored,
                      std::span<const uint8_t> dict, std::span<uint8_t> out,
                      const std::string& what) {
  if (stored.size() != block.stored_size || out.size() != block.content_size) {
    return Status::InvalidArgument(what + ": block buffers do not match the block");
  }
  if (block.raw) {
    std::memcpy(out.data(), stored.data(), out.size());
    return Status::Ok();
  }
  if (dict.size() > kWindow) dict = dict.last(kWindow);
  const int n = LZ4_decompress_safe_usingDict(
      reinterpret_cast<const char*>(stored.data()), reinterpret_cast<char*>(out.data()),
      static_cast<int>(stored.size()), static_cast<int>(out.size()),
      reinterpret_cast<const char*>(dict.data()), static_cast<int>(dict.size()));
  if (n < 0) return BadAt(what, block.stored_offset - 4, "block does not decode");
  if (static_cast<size_t>(n) != out.size()) {
    return BadAt(
        what, block.stored_offset - 4,
        "block decodes to " + std::to_string(n) + " bytes, expected " + std::to_string(out.size()));
  }
  return Status::Ok();
}

Result<std::vector<WindowRange>> Lz4WindowReferences(std::span<const uint8_t> stored,
                                                     uint32_t window, const std::string& what) {
  // lz4 block format: sequences of a token (literal length << 4 | match length - 4), more
  // length bytes when a nibble is 15, the literals, a 2-byte little-endian match offset, more
  // match length bytes; the last sequence has literals only.
  std::vector<WindowRange> refs;
  const uint8_t* ip = stored.data();
  const uint8_t* const end = ip + stored.size();
  uint64_t pos = 0;  // of the block's content produced so far
  auto length = [&](uint64_t n) -> Result<uint64_t> {
    if (n != 15) return n;
    for (;;) {
      if (ip == end) return BadAt(what, 0, "block sequence length runs past the block");
      const uint8_t b = *ip++;
      n += b;
      if (b != 255) return n;
    }
  };
  while (ip < end) {
    const uint8_t token = *ip++;
    BFS_ASSIGN_OR_RETURN(uint64_t literals, length(token >> 4));
    if (literals > static_cast<uint64_t>(end - ip)) {
      return BadAt(what, 0, "block literals run past the block");
    }
    ip += literals;
    pos += literals;
    if (ip == end) break;  // the last sequence
    if (end - ip < 2) return BadAt(what, 0, "block match offset runs past the block");
    const uint32_t offset = uint32_t{ip[0]} | uint32_t{ip[1]} << 8;
    ip += 2;
    BFS_ASSIGN_OR_RETURN(uint64_t match, length(token & 15));
    match += 4;
    if (offset == 0) return BadAt(what, 0, "block match offset is zero");
    if (offset > pos) {  // starts in the window
      const uint64_t back = offset - pos;
      if (back > window) return BadAt(what, 0, "block match reaches before its window");
      const uint64_t begin = window - back;
      refs.push_back({static_cast<uint32_t>(begin),
                      static_cast<uint32_t>(std::min<uint64_t>(window, begin + match))});
    }
    pos += match;
  }
  std::sort(refs.begin(), refs.end(),
            [](const WindowRange& a, const WindowRange& b) { return a.begin < b.begin; });
  size_t n = 0;
  for (const WindowRange& r : refs) {
    if (n > 0 && r.begin <= refs[n - 1].end) {
      refs[n - 1].end = std::max(refs[n - 1].end, r.end);
    } else {
      refs[n++] = r;
    }
  }
  refs.resize(n);
  return refs;
}

namespace {

// Reads of a frame held in memory, for Walk: past its end is a truncated frame.
auto StoredReader(std::span<const uint8_t> stored, const std::string& what) {
  return [stored, &what](uint64_t offset, std::span<uint8_t> buf) -> Status {
    if (offset > stored.size() || buf.size() > stored.size() - offset) {
      return BadAt(what, offset, "frame is truncated");
    }
    std::memcpy(buf.data(), stored.data() + offset, buf.size());
    return Status::Ok();
  };
}

}  // namespace

Result<Lz4FrameLayout> DecodeLz4Frame(std::span<const uint8_t> stored, std::span<uint8_t> out,
                                      bool verify, const std::string& what) {
  auto read = StoredReader(stored, what);
  // The walk gives the blocks' places in the frame; their content sizes are learnt here.
  BFS_ASSIGN_OR_RETURN(Lz4FrameLayout layout,
                       Walk(read, stored.size(), out.size(), what, /*regular=*/false));
  uint64_t pos = 0;
  for (Lz4Block& b : layout.blocks) {
    std::span<const uint8_t> in = stored.subspan(b.stored_offset, b.stored_size);
    // The content checksum, checked below, covers what the block checksums would.
    if (verify && !layout.content_checksum) BFS_RETURN_IF_ERROR(CheckLz4Block(layout, b, in, what));
    const uint64_t room = std::min<uint64_t>(layout.block_max, out.size() - pos);
    int n;
    if (b.raw) {
      if (b.stored_size > room) return BadAt(what, b.stored_offset - 4, "block overflows");
      std::memcpy(out.data() + pos, in.data(), in.size());
      n = static_cast<int>(in.size());
    } else {
      // The content decoded so far is the dictionary (prefix mode); none for independent blocks.
      const size_t dict = layout.linked ? static_cast<size_t>(std::min<uint64_t>(pos, kWindow)) : 0;
      n = LZ4_decompress_safe_usingDict(
          reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(out.data() + pos),
          static_cast<int>(in.size()), static_cast<int>(room),
          reinterpret_cast<const char*>(out.data() + pos - dict), static_cast<int>(dict));
      if (n < 0) return BadAt(what, b.stored_offset - 4, "block does not decode");
    }
    if (n == 0 && pos < out.size()) return BadAt(what, b.stored_offset - 4, "empty block");
    b.content_offset = pos;
    b.content_size = static_cast<uint32_t>(n);
    pos += static_cast<uint64_t>(n);
  }
  if (pos != out.size()) {
    return BadAt(what, stored.size(),
                 "frame expands to " + std::to_string(pos) + " bytes, expected " +
                     std::to_string(out.size()));
  }
  if (verify && layout.content_checksum &&
      XXH32(out.data(), out.size(), 0) != layout.content_xxh32) {
    return BadAt(what, stored.size() - 4, "content checksum mismatch");
  }
  return layout;
}

Result<Lz4FrameLayout> DecodeLz4FrameInBlocks(std::span<const uint8_t> stored,
                                              uint64_t content_size, const Lz4BlockOutFn& out,
                                              const Lz4BlockDoneFn& done, const std::string& what) {
  auto read = StoredReader(stored, what);
  BFS_ASSIGN_OR_RETURN(Lz4FrameLayout layout,
                       Walk(read, stored.size(), content_size, what, /*regular=*/false));
  std::unique_ptr<XXH32_state_t, decltype(&XXH32_freeState)> hash(XXH32_createState(),
                                                                  &XXH32_freeState);
  if (!hash) throw std::bad_alloc();
  XXH32_reset(hash.get(), 0);
  std::span<const uint8_t> prev;  // the previous block's content (a linked block's dictionary)
  uint64_t pos = 0;
  for (size_t i = 0; i < layout.blocks.size(); ++i) {
    Lz4Block& b = layout.blocks[i];
    std::span<const uint8_t> in = stored.subspan(b.stored_offset, b.stored_size);
    // The content checksum, checked below, covers what the block checksums would.
    if (!layout.content_checksum) BFS_RETURN_IF_ERROR(CheckLz4Block(layout, b, in, what));
    if (pos >= content_size) {  // an empty last block: left to DecodeLz4Frame
      return Status::InvalidArgument(what + ": lz4 block past the content");
    }
    const size_t room =
        static_cast<size_t>(std::min<uint64_t>(layout.block_max, content_size - pos));
    if (layout.linked && i > 0 && prev.size() < kWindow) {
      return Status::InvalidArgument(what + ": linked lz4 block " + std::to_string(i - 1) +
                                     " is shorter than the 64 KiB window");
    }
    std::span<uint8_t> dst = out(i, room).first(room);
    int n;
    if (b.raw) {
      if (b.stored_size > room) return BadAt(what, b.stored_offset - 4, "block overflows");
      std::memcpy(dst.data(), in.data(), in.size());
      n = static_cast<int>(in.size());
    } else {
      std::span<const uint8_t> dict = layout.linked
                                          ? prev.last(std::min<size_t>(prev.size(), kWindow))
                                          : std::span<const uint8_t>();
      n = LZ4_decompress_safe_usingDict(
          reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(dst.data()),
          static_cast<int>(in.size()), static_cast<int>(room),
          reinterpret_cast<const char*>(dict.data()), static_cast<int>(dict.size()));
      if (n < 0) return BadAt(what, b.stored_offset - 4, "block does not decode");
    }
    if (n == 0) return BadAt(what, b.stored_offset - 4, "empty block");
    b.content_offset = pos;
    b.content_size = static_cast<uint32_t>(n);
    pos += static_cast<uint64_t>(n);
    prev = dst.first(static_cast<size_t>(n));
    done(i, prev);
    if (layout.content_checksum) XXH32_update(hash.get(), prev.data(), prev.size());
  }
  if (pos != content_size) {
    return BadAt(what, stored.size(),
                 "frame expands to " + std::to_string(pos) + " bytes, expected " +
                     std::to_string(content_size));
  }
  if (layout.content_checksum && XXH32_digest(hash.get()) != layout.content_xxh32) {
    return BadAt(what, stored.size() - 4, "content checksum mismatch");
  }
  return layout;
}

}  // namespace backupfs
