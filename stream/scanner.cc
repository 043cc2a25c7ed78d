#include "stream/scanner.h"

#include <array>

#include "stream/lz4_chunk.h"

namespace backupfs {
namespace {

std::string At(const ByteSource& src, uint64_t offset) {
  return src.name() + ": offset " + std::to_string(offset) + ": ";
}

Result<FrameHeader> ReadHeader(const ByteSource& src, uint64_t offset) {
  std::array<uint8_t, kFrameHeaderSize> buf;
  if (offset > src.size() || src.size() - offset < kFrameHeaderSize) {
    return Status::Corruption(At(src, offset) + "file ends inside a frame header (truncated " +
                              "stream, or an interrupted backup)");
  }
  BFS_RETURN_IF_ERROR(src.ReadAt(offset, buf));
  return DecodeFrameHeader(buf, src.name(), offset);
}

Status ExpectTerminator(const ByteSource& src, uint64_t offset) {
  std::array<uint8_t, 2> crlf;
  if (offset > src.size() || src.size() - offset < 2) {
    return Status::Corruption(At(src, offset) + "file ends inside a frame payload (truncated)");
  }
  BFS_RETURN_IF_ERROR(src.ReadAt(offset, crlf));
  if (crlf[0] != '\r' || crlf[1] != '\n') {
    return Status::Corruption(At(src, offset) + "missing CR LF after a frame payload");
  }
  return Status::Ok();
}

// Locates the trailer of a compressed stream: sets stop_offset and trailer.
Status ReadTrailer(const ByteSource& src, StreamLayout* layout) {
  BFS_ASSIGN_OR_RETURN(layout->stop_offset, FramesEnd(src, layout->meta, layout->payload_begin));
  const uint64_t json_at = layout->stop_offset + kFrameHeaderSize;
  const uint64_t comp_at = src.size() - kFrameHeaderSize;
  BFS_RETURN_IF_ERROR(ExpectTerminator(src, comp_at - 2));
  std::string json(comp_at - 2 - json_at, '\0');
  BFS_RETURN_IF_ERROR(
      src.ReadAt(json_at, std::span(reinterpret_cast<uint8_t*>(json.data()), json.size())));
  BFS_ASSIGN_OR_RETURN(layout->trailer, DecodeTrailer(json, src.name(), json_at));
  BFS_ASSIGN_OR_RETURN(FrameHeader stop, ReadHeader(src, layout->stop_offset));
  if (stop.kind != FrameKind::kStop) {
    return Status::Corruption(At(src, layout->stop_offset) +
                              "no 'stop' frame before the compression trailer");
  }
  return Status::Ok();
}

// Fills the per-chunk sizes of a compressed data frame from its trailer entry.
Status ResolveChunks(const ByteSource& src, const TrailerEntry& entry, FrameRecord* f) {
  f->chunk_stored = entry.chunk_sizes;
  if (!entry.split && entry.chunk_sizes.size() == 1) {
    if (f->header.length > kMaxChunkLength ||
        entry.chunk_sizes[0] > Lz4MaxChunkStoredSize(f->header.length)) {
      return Status::Corruption(At(src, f->payload_offset) + "one lz4 chunk of " +
                                std::to_string(f->header.length) + " bytes exceeds the limit of " +
                                std::to_string(kMaxChunkLength));
    }
    f->chunk_lengths = {f->header.length};
    return Status::Ok();
  }
  // A split frame: each lz4 frame records its content size in its header.
  uint64_t at = f->payload_offset;
  uint64_t total = 0;
  for (uint64_t stored : entry.chunk_sizes) {
    if (stored > f->stored_size - (at - f->payload_offset)) {
      return Status::Corruption(At(src, at) + "lz4 chunk sizes exceed the frame's payload");
    }
    std::array<uint8_t, kLz4MaxHeaderSize> hdr{};
    size_t n = static_cast<size_t>(std::min<uint64_t>(stored, hdr.size()));
    BFS_RETURN_IF_ERROR(src.ReadAt(at, std::span(hdr).first(n)));
    BFS_ASSIGN_OR_RETURN(uint64_t len,
                         Lz4ChunkContentSize(std::span(hdr).first(n), At(src, at) + "lz4 chunk"));
    if (len > f->header.length - total || len > kMaxChunkLength ||
        stored > Lz4MaxChunkStoredSize(len)) {
      return Status::Corruption(At(src, at) + "lz4 chunk sizes do not fit their frame's length");
    }
    f->chunk_lengths.push_back(len);
    total += len;
    at += stored;
  }
  if (total != f->header.length) {
    return Status::Corruption(At(src, f->payload_offset) + "lz4 chunks expand to " +
                              std::to_string(total) + " bytes, the frame says " +
                              std::to_string(f->header.length));
  }
  return Status::Ok();
}

class Walker {
 public:
  Walker(const ByteSource& src, StreamLayout* layout) : src_(src), layout_(layout) {}

  Status Run() {
    uint64_t pos = layout_->payload_begin;
    uint64_t data_bytes = 0;
    for (;;) {
      BFS_ASSIGN_OR_RETURN(FrameHeader h, ReadHeader(src_, pos));
      if (h.kind == FrameKind::kStop) {
        BFS_RETURN_IF_ERROR(CheckStop(pos));
        break;
      }
      if (h.kind != FrameKind::kData && h.kind != FrameKind::kZero) {
        return Status::Corruption(At(src_, pos) + "unexpected '" +
                                  std::string(FrameKindName(h.kind)) + "' frame among the data");
      }
      BFS_RETURN_IF_ERROR(CheckOrder(h, pos));
      FrameRecord f{h, pos, 0, 0, {}, {}};
      pos += kFrameHeaderSize;
      if (h.kind == FrameKind::kData) {
        BFS_RETURN_IF_ERROR(Payload(&f));
        pos = f.payload_offset + f.stored_size + 2;
        data_bytes += h.length;
      }
      layout_->frames.push_back(std::move(f));
    }
    if (layout_->meta.compressed() && data_frames_ != layout_->trailer.size()) {
      return Status::Corruption(At(src_, layout_->stop_offset) + "the trailer lists " +
                                std::to_string(layout_->trailer.size()) +
                                " data frames, the stream has " + std::to_string(data_frames_));
    }
    if (data_bytes != layout_->meta.data_size) {
      return Status::Corruption(At(src_, layout_->stop_offset) + "data frames hold " +
                                std::to_string(data_bytes) + " bytes, the metadata's dataSize is " +
                                std::to_string(layout_->meta.data_size));
    }
    return Status::Ok();
  }

 private:
  Status CheckOrder(const FrameHeader& h, uint64_t pos) {
    if (h.start < prev_end_) {
      return Status::Corruption(At(src_, pos) + "frame at disk offset " + std::to_string(h.start) +
                                " overlaps or precedes the previous frame, which ends at " +
                                std::to_string(prev_end_));
    }
    if (h.start + h.length > layout_->meta.virtual_size) {
      return Status::Corruption(At(src_, pos) + "frame ends at disk offset " +
                                std::to_string(h.start + h.length) + ", past the disk size " +
                                std::to_string(layout_->meta.virtual_size));
    }
    prev_end_ = h.start + h.length;
    return Status::Ok();
  }

  Status Payload(FrameRecord* f) {
    f->payload_offset = f->header_offset + kFrameHeaderSize;
    if (layout_->meta.compressed()) {
      if (data_frames_ >= layout_->trailer.size()) {
        return Status::Corruption(At(src_, f->header_offset) +
                                  "more data frames than the compression trailer lists");
      }
      const TrailerEntry& entry = layout_->trailer[data_frames_];
      f->stored_size = entry.total();
      if (!EndsBeforeStop(*f)) return PastEnd(*f);
      BFS_RETURN_IF_ERROR(ResolveChunks(src_, entry, f));
    } else {
      f->stored_size = f->header.length;
      if (!EndsBeforeStop(*f)) return PastEnd(*f);
    }
    ++data_frames_;
    return ExpectTerminator(src_, f->payload_offset + f->stored_size);
  }

  // Payload plus CR LF must end at or before where the frames end.
  bool EndsBeforeStop(const FrameRecord& f) const {
    uint64_t limit = layout_->meta.compressed() ? layout_->stop_offset : src_.size();
    return f.payload_offset <= limit && f.stored_size <= limit - f.payload_offset &&
           limit - f.payload_offset - f.stored_size >= 2;
  }

  Status PastEnd(const FrameRecord& f) const {
    return Status::Corruption(At(src_, f.header_offset) + "data frame payload of " +
                              std::to_string(f.stored_size) +
                              " bytes runs past the end of the frames (truncated stream?)");
  }

  Status CheckStop(uint64_t pos) {
    if (layout_->meta.compressed()) {
      if (pos != layout_->stop_offset) {
        return Status::Corruption(At(src_, pos) + "'stop' frame, but the trailer says the " +
                                  "frames end at offset " + std::to_string(layout_->stop_offset));
      }
      return Status::Ok();
    }
    layout_->stop_offset = pos;
    if (pos + kFrameHeaderSize != src_.size()) {
      return Status::Corruption(At(src_, pos + kFrameHeaderSize) +
                                std::to_string(src_.size() - pos - kFrameHeaderSize) +
                                " unexpected bytes after the 'stop' frame");
    }
    return Status::Ok();
  }

  const ByteSource& src_;
  StreamLayout* layout_;
  uint64_t prev_end_ = 0;
  size_t data_frames_ = 0;
};

}  // namespace

Result<uint64_t> FramesEnd(const ByteSource& src, const StreamMetadata& meta,
                           uint64_t payload_begin) {
  const uint64_t size = src.size();
  if (!meta.compressed()) {
    if (size < payload_begin + kFrameHeaderSize) {
      return Status::Corruption(At(src, size) + "no 'stop' frame: the file is truncated");
    }
    return size - kFrameHeaderSize;
  }
  if (size < payload_begin + 2 * kFrameHeaderSize + 2) {
    return Status::Corruption(At(src, size) + "compressed stream has no complete trailer");
  }
  const uint64_t comp_at = size - kFrameHeaderSize;
  BFS_ASSIGN_OR_RETURN(FrameHeader comp, ReadHeader(src, comp_at));
  if (comp.kind != FrameKind::kComp) {
    return Status::Corruption(At(src, comp_at) +
                              "compressed stream does not end with a 'comp' frame (truncated?)");
  }
  if (comp.length > comp_at - payload_begin - kFrameHeaderSize - 2) {
    return Status::Corruption(At(src, comp_at) + "trailer length " + std::to_string(comp.length) +
                              " reaches before the frames");
  }
  return comp_at - 2 - comp.length - kFrameHeaderSize;
}

Result<StreamMetadata> ReadMetadata(const ByteSource& src, uint64_t* payload_begin) {
  BFS_ASSIGN_OR_RETURN(FrameHeader h, ReadHeader(src, 0));
  if (h.kind != FrameKind::kMeta) {
    return Status::Corruption(At(src, 0) + "stream does not start with a 'meta' frame");
  }
  if (h.length > src.size() - kFrameHeaderSize) {
    return Status::Corruption(At(src, 0) + "metadata length " + std::to_string(h.length) +
                              " runs past the end of the file");
  }
  std::string json(h.length, '\0');
  BFS_RETURN_IF_ERROR(src.ReadAt(kFrameHeaderSize,
                                 std::span(reinterpret_cast<uint8_t*>(json.data()), json.size())));
  BFS_RETURN_IF_ERROR(ExpectTerminator(src, kFrameHeaderSize + h.length));
  if (payload_begin) *payload_begin = kFrameHeaderSize + h.length + 2;
  return DecodeMetadata(json, src.name(), kFrameHeaderSize);
}

Result<StreamLayout> ScanStream(const ByteSource& src) {
  StreamLayout layout;
  layout.file_size = src.size();
  BFS_ASSIGN_OR_RETURN(layout.meta, ReadMetadata(src, &layout.payload_begin));
  if (layout.meta.compressed()) BFS_RETURN_IF_ERROR(ReadTrailer(src, &layout));
  BFS_RETURN_IF_ERROR(Walker(src, &layout).Run());
  return layout;
}

StreamIndex IndexFromLayout(const StreamLayout& layout, const DataFileIdentity& identity) {
  StreamIndex index;
  index.identity = identity;
  index.compressed = layout.meta.compressed();
  for (uint32_t n = 0; n < layout.frames.size(); ++n) {
    const FrameRecord& f = layout.frames[n];
    if (f.header.length == 0) continue;
    Chunk c;
    c.frame = n;
    c.offset = f.header.start;
    if (f.header.kind == FrameKind::kZero) {
      c.kind = ChunkKind::kZero;
      c.length = f.header.length;
      index.chunks.push_back(c);
      continue;
    }
    if (!index.compressed) {
      c.length = f.header.length;
      c.file_offset = f.payload_offset;
      c.stored_size = f.stored_size;
      index.chunks.push_back(c);
      continue;
    }
    c.compressed = true;
    c.file_offset = f.payload_offset;
    for (size_t i = 0; i < f.chunk_stored.size(); ++i) {
      c.length = f.chunk_lengths[i];
      c.stored_size = f.chunk_stored[i];
      if (c.length > 0) index.chunks.push_back(c);
      c.offset += c.length;
      c.file_offset += c.stored_size;
    }
  }
  return index;
}

}  // namespace backupfs

namespace backupfs {

Status CheckIndexMatchesLayout(const StreamIndex& index, const StreamLayout& layout,
                               const std::string& file) {
  size_t ci = 0;
  for (uint32_t n = 0; n < layout.frames.size(); ++n) {
    const FrameRecord& f = layout.frames[n];
    if (f.header.length == 0) continue;
    const bool data = f.header.kind == FrameKind::kData;
    uint64_t pos = f.header.start;
    uint64_t stored = f.payload_offset;
    for (; ci < index.chunks.size() && index.chunks[ci].frame == n; ++ci) {
      const Chunk& c = index.chunks[ci];
      if (c.offset != pos || (c.kind == ChunkKind::kData) != data ||
          (data && c.file_offset != stored)) {
        break;
      }
      pos += c.length;
      stored += c.stored_size;
    }
    if (pos != f.header.end_offset() || (data && stored != f.payload_offset + f.stored_size)) {
      return Status::Corruption(file + ": offset " + std::to_string(f.header_offset) + ": the " +
                                std::string(FrameKindName(f.header.kind)) +
                                " frame at disk offset " + std::to_string(f.header.start) +
                                " is not what the index records for it");
    }
  }
  if (ci != index.chunks.size()) {
    return Status::Corruption(file + ": the index records chunks that no frame holds (from disk " +
                              "offset " + std::to_string(index.chunks[ci].offset) + ")");
  }
  return Status::Ok();
}

}  // namespace backupfs
