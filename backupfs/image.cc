#include "backupfs/image.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace backupfs {
namespace {

// The part of `e` inside [from, to).
ImageExtent Slice(const ImageExtent& e, uint64_t from, uint64_t to) {
  ImageExtent s = e;
  s.offset = std::max(e.offset, from);
  s.length = std::min(e.end(), to) - s.offset;
  s.chunk_delta = e.chunk_delta + (s.offset - e.offset);
  return s;
}

std::vector<ImageExtent> FileExtents(const StreamReader& reader, uint32_t file) {
  std::vector<ImageExtent> out;
  const auto& chunks = reader.index().chunks;
  out.reserve(chunks.size());
  for (uint32_t i = 0; i < chunks.size(); ++i) {
    out.push_back(
        {chunks[i].offset, chunks[i].length, chunks[i].kind == ChunkKind::kZero, file, i, 0});
  }
  return out;
}

}  // namespace

std::vector<ImageExtent> Overlay(const std::vector<ImageExtent>& base,
                                 const std::vector<ImageExtent>& top) {
  std::vector<ImageExtent> out;
  out.reserve(base.size() + top.size());
  size_t b = 0;
  std::optional<ImageExtent> cur;  // the base extent being consumed, trimmed as top covers it
  auto next_base = [&] {
    if (!cur && b < base.size()) cur = base[b++];
    return cur.has_value();
  };
  for (const ImageExtent& t : top) {
    while (next_base() && cur->offset < t.offset) {  // base before t
      if (cur->end() <= t.offset) {
        out.push_back(*cur);
        cur.reset();
      } else {
        out.push_back(Slice(*cur, cur->offset, t.offset));
        *cur = Slice(*cur, t.offset, cur->end());
        break;
      }
    }
    out.push_back(t);
    while (next_base() && cur->offset < t.end()) {  // base under t
      if (cur->end() <= t.end()) {
        cur.reset();
      } else {
        *cur = Slice(*cur, t.end(), cur->end());
        break;
      }
    }
  }
  while (next_base()) {
    out.push_back(*cur);
    cur.reset();
  }
  return out;
}

std::shared_ptr<DiskImage> DiskImage::Build(const DiskChain& chain) {
  std::shared_ptr<DiskImage> image(new DiskImage(chain.files, chain.virtual_size));
  std::vector<ImageExtent> merged;
  for (uint32_t f = 0; f < chain.files.size(); ++f) {
    merged = Overlay(merged, FileExtents(*chain.files[f], f));
  }
  // Clip to this point's size: an older, larger disk's extents past it do not belong.
  while (!merged.empty() && merged.back().offset >= image->size_) merged.pop_back();
  if (!merged.empty() && merged.back().end() > image->size_) {
    merged.back() = Slice(merged.back(), merged.back().offset, image->size_);
  }
  image->extents_ = std::move(merged);
  return image;
}

size_t DiskImage::FirstEndingAfter(uint64_t offset) const {
  auto it = std::upper_bound(extents_.begin(), extents_.end(), offset,
                             [](uint64_t off, const ImageExtent& e) { return off < e.end(); });
  return static_cast<size_t>(it - extents_.begin());
}

Status DiskImage::Read(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size_ || out.size() > size_ - offset) {
    return Status::InvalidArgument("read past the end of the image");
  }
  const uint64_t end = offset + out.size();
  uint64_t pos = offset;
  for (size_t i = FirstEndingAfter(offset); i < extents_.size() && pos < end; ++i) {
    const ImageExtent& e = extents_[i];
    if (e.offset >= end) break;
    if (e.offset > pos) {
      std::memset(out.data() + (pos - offset), 0, e.offset - pos);
      pos = e.offset;
    }
    const uint64_t n = std::min(end, e.end()) - pos;
    std::span<uint8_t> piece = out.subspan(pos - offset, n);
    if (e.zero) {
      std::memset(piece.data(), 0, n);
    } else {
      StreamReader& r = *files_[e.file];
      BFS_RETURN_IF_ERROR(
          r.ReadChunk(r.index().chunks[e.chunk], e.chunk_delta + (pos - e.offset), piece));
    }
    pos += n;
  }
  if (pos < end) std::memset(out.data() + (pos - offset), 0, end - pos);
  return Status::Ok();
}

bool DiskImage::RawPieces(uint64_t offset, uint64_t length, std::vector<RawPiece>* out) const {
  out->clear();
  const uint64_t end = std::min(offset + length, size_);
  uint64_t pos = offset;
  auto add_zeros = [&](uint64_t n) {
    if (!out->empty() && out->back().fd < 0) {
      out->back().length += n;
    } else {
      out->push_back({-1, 0, n});
    }
  };
  for (size_t i = FirstEndingAfter(offset); i < extents_.size() && pos < end; ++i) {
    const ImageExtent& e = extents_[i];
    if (e.offset >= end) break;
    if (e.offset > pos) add_zeros(e.offset - pos);
    pos = std::max(pos, e.offset);
    const uint64_t n = std::min(end, e.end()) - pos;
    if (e.zero) {
      add_zeros(n);
    } else {
      const StreamReader& r = *files_[e.file];
      const Chunk& c = r.index().chunks[e.chunk];
      if (!r.ServesRaw(c) || r.fd() < 0) return false;
      out->push_back({r.fd(), c.file_offset + e.chunk_delta + (pos - e.offset), n});
    }
    pos += n;
  }
  if (pos < end) add_zeros(end - pos);
  return true;
}

void DiskImage::WillNeed(uint64_t offset, uint64_t length) const {
  const uint64_t end = std::min(offset + length, size_);
  for (size_t i = FirstEndingAfter(offset); i < extents_.size(); ++i) {
    const ImageExtent& e = extents_[i];
    if (e.offset >= end) break;
    if (e.zero) continue;
    const StreamReader& r = *files_[e.file];
    const Chunk& c = r.index().chunks[e.chunk];
    // Compressed and checked chunks are read whole; a plain one only where the extent is.
    const bool whole = c.compressed || c.has_checksum;
    const uint64_t from = whole ? c.file_offset : c.file_offset + e.chunk_delta;
    const uint64_t n = whole ? c.stored_size : e.length;
    r.file().WillNeed(from, n);
  }
}

uint64_t DiskImage::NextData(uint64_t offset) const {
  for (size_t i = FirstEndingAfter(offset); i < extents_.size(); ++i) {
    if (!extents_[i].zero) return std::max(offset, extents_[i].offset);
  }
  return size_;
}

uint64_t DiskImage::NextHole(uint64_t offset) const {
  uint64_t pos = offset;
  for (size_t i = FirstEndingAfter(offset); i < extents_.size(); ++i) {
    const ImageExtent& e = extents_[i];
    if (e.zero || e.offset > pos) return pos;
    pos = e.end();
  }
  return std::min(pos, size_);
}

}  // namespace backupfs
