#include "stream/index.h"

#include <algorithm>
#include <cstring>

#include "stream/xxh3.h"

#include "stream/checksum.h"
#include "stream/lz4_chunk.h"

namespace backupfs {
namespace {

constexpr char kMagic[8] = {'B', 'F', 'S', 'I', 'D', 'X', '\r', '\n'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 64;
constexpr size_t kRecordSize = 48;
constexpr size_t kChecksumField = 56;
constexpr uint32_t kFlagCompressed = 1;
constexpr uint8_t kRecCompressed = 1;
constexpr uint8_t kRecHasChecksum = 2;

void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

Status BadAt(const std::string& file, uint64_t offset, const std::string& what) {
  return Status::Corruption(file + ": offset " + std::to_string(offset) + ": " + what);
}

void EncodeRecord(const Chunk& c, uint8_t* p) {
  Put64(p, c.offset);
  Put64(p + 8, c.length);
  Put64(p + 16, c.file_offset);
  Put64(p + 24, c.stored_size);
  Put64(p + 32, c.checksum);
  Put32(p + 40, c.frame);
  p[44] = static_cast<uint8_t>(c.kind);
  p[45] = (c.compressed ? kRecCompressed : 0) | (c.has_checksum ? kRecHasChecksum : 0);
  p[46] = p[47] = 0;
}

Result<Chunk> DecodeRecord(const uint8_t* p, const std::string& file, uint64_t offset) {
  Chunk c;
  c.offset = Get64(p);
  c.length = Get64(p + 8);
  c.file_offset = Get64(p + 16);
  c.stored_size = Get64(p + 24);
  c.checksum = Get64(p + 32);
  c.frame = Get32(p + 40);
  if (p[44] != static_cast<uint8_t>(ChunkKind::kData) &&
      p[44] != static_cast<uint8_t>(ChunkKind::kZero)) {
    return BadAt(file, offset + 44, "unknown chunk kind " + std::to_string(p[44]));
  }
  c.kind = static_cast<ChunkKind>(p[44]);
  if ((p[45] & ~(kRecCompressed | kRecHasChecksum)) != 0 || p[46] != 0 || p[47] != 0) {
    return BadAt(file, offset + 45, "unknown chunk flags");
  }
  c.compressed = (p[45] & kRecCompressed) != 0;
  c.has_checksum = (p[45] & kRecHasChecksum) != 0;
  return c;
}

uint64_t HashRange(const ByteSource& data, uint64_t offset, std::span<uint8_t> buf, Status* s) {
  *s = data.ReadAt(offset, buf);
  return s->ok() ? Xxh3(buf) : 0;
}

}  // namespace

Result<DataFileIdentity> IdentifyDataFile(const ByteSource& data) {
  DataFileIdentity id;
  id.size = data.size();
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(kIdentitySpan, id.size)));
  Status s;
  id.head_hash = HashRange(data, 0, buf, &s);
  BFS_RETURN_IF_ERROR(s);
  id.tail_hash = HashRange(data, id.size - buf.size(), buf, &s);
  BFS_RETURN_IF_ERROR(s);
  return id;
}

std::pair<size_t, size_t> StreamIndex::Find(uint64_t offset, uint64_t length) const {
  // First chunk that ends after offset.
  auto first = std::upper_bound(chunks.begin(), chunks.end(), offset,
                                [](uint64_t off, const Chunk& c) { return off < c.end(); });
  auto last = first;
  uint64_t end = offset + length;
  while (last != chunks.end() && last->offset < end) ++last;
  return {static_cast<size_t>(first - chunks.begin()), static_cast<size_t>(last - chunks.begin())};
}

std::vector<uint8_t> EncodeIndex(const StreamIndex& index) {
  std::vector<uint8_t> out(kHeaderSize + kRecordSize * index.chunks.size());
  uint8_t* h = out.data();
  std::memcpy(h, kMagic, sizeof(kMagic));
  Put32(h + 8, kVersion);
  Put32(h + 12, index.compressed ? kFlagCompressed : 0);
  Put64(h + 16, index.identity.size);
  Put64(h + 24, index.identity.head_hash);
  Put64(h + 32, index.identity.tail_hash);
  Put64(h + 40, index.chunks.size());
  Put64(h + 48, index.checksum_granule);
  for (size_t i = 0; i < index.chunks.size(); ++i) {
    EncodeRecord(index.chunks[i], out.data() + kHeaderSize + i * kRecordSize);
  }
  // The checksum covers every byte of the file but its own field.
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, out.data(), kChecksumField);
  XXH3_64bits_update(st, out.data() + kHeaderSize, out.size() - kHeaderSize);
  Put64(h + kChecksumField, XXH3_64bits_digest(st));
  XXH3_freeState(st);
  return out;
}

Result<StreamIndex> DecodeIndex(std::span<const uint8_t> bytes, const std::string& file) {
  if (bytes.size() < kHeaderSize) {
    return BadAt(file, bytes.size(), "index is truncated (no complete header)");
  }
  const uint8_t* h = bytes.data();
  if (std::memcmp(h, kMagic, sizeof(kMagic)) != 0) return BadAt(file, 0, "not a backupfs index");
  if (Get32(h + 8) != kVersion) {
    return BadAt(file, 8, "unsupported index version " + std::to_string(Get32(h + 8)));
  }
  uint32_t flags = Get32(h + 12);
  if ((flags & ~kFlagCompressed) != 0) return BadAt(file, 12, "unknown index flags");
  uint64_t count = Get64(h + 40);
  if (count > (bytes.size() - kHeaderSize) / kRecordSize ||
      bytes.size() != kHeaderSize + count * kRecordSize) {
    return BadAt(file, 40,
                 "index holds " + std::to_string(bytes.size()) + " bytes, not the " +
                     "header and " + std::to_string(count) + " records it announces");
  }
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, h, kChecksumField);
  XXH3_64bits_update(st, h + kHeaderSize, bytes.size() - kHeaderSize);
  uint64_t sum = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  if (sum != Get64(h + kChecksumField))
    return BadAt(file, kChecksumField, "index checksum mismatch");

  StreamIndex index;
  index.compressed = (flags & kFlagCompressed) != 0;
  index.identity = {Get64(h + 16), Get64(h + 24), Get64(h + 32)};
  index.checksum_granule = Get64(h + 48);
  index.chunks.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t at = kHeaderSize + i * kRecordSize;
    BFS_ASSIGN_OR_RETURN(Chunk c, DecodeRecord(h + at, file, at));
    index.chunks.push_back(c);
  }
  return index;
}

Status ValidateChunks(const StreamIndex& index, uint64_t virtual_size, uint64_t payload_begin,
                      uint64_t payload_end, const std::string& file) {
  uint64_t prev_end = 0;
  uint64_t prev_stored_end = payload_begin;
  for (size_t i = 0; i < index.chunks.size(); ++i) {
    const Chunk& c = index.chunks[i];
    std::string where =
        "chunk " + std::to_string(i) + " (disk offset " + std::to_string(c.offset) + ")";
    if (c.length == 0) return Status::Corruption(file + ": " + where + " is empty");
    if (c.offset > UINT64_MAX - c.length || c.end() > virtual_size) {
      return Status::Corruption(file + ": " + where + " ends past the disk size " +
                                std::to_string(virtual_size));
    }
    if (c.offset < prev_end) {
      return Status::Corruption(file + ": " + where +
                                " overlaps the previous chunk or is out of order");
    }
    prev_end = c.end();
    if (c.kind == ChunkKind::kZero) {
      if (c.stored_size != 0 || c.compressed || c.has_checksum) {
        return Status::Corruption(file + ": " + where + " is a zero chunk with stored bytes");
      }
      continue;
    }
    if (c.compressed != index.compressed || (!c.compressed && c.stored_size != c.length) ||
        c.stored_size == 0 || ((c.compressed || c.has_checksum) && c.length > kMaxChunkLength) ||
        (c.compressed && c.stored_size > Lz4MaxChunkStoredSize(c.length))) {
      return Status::Corruption(file + ": " + where + " has an impossible stored size");
    }
    if (c.file_offset < prev_stored_end || c.file_offset > payload_end ||
        c.stored_size > payload_end - c.file_offset) {
      return Status::Corruption(file + ": " + where +
                                " points outside the frames of the data file");
    }
    prev_stored_end = c.file_offset + c.stored_size;
  }
  return Status::Ok();
}

}  // namespace backupfs
