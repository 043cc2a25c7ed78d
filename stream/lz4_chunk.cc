#include "stream/lz4_chunk.h"

#include <lz4frame.h>

#include <memory>

namespace backupfs {
namespace {

struct DctxDeleter {
  void operator()(LZ4F_dctx* d) const { LZ4F_freeDecompressionContext(d); }
};

LZ4F_preferences_t Preferences(size_t size, int level) {
  LZ4F_preferences_t prefs = LZ4F_INIT_PREFERENCES;
  prefs.frameInfo.blockSizeID = LZ4F_max64KB;
  prefs.frameInfo.blockMode = LZ4F_blockIndependent;
  prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
  prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
  prefs.frameInfo.contentSize = size;
  prefs.compressionLevel = level;
  return prefs;
}

}  // namespace

Lz4Bytes Lz4CompressChunk(std::span<const uint8_t> input, int level) {
  LZ4F_preferences_t prefs = Preferences(input.size(), level);
  Lz4Bytes out(LZ4F_compressFrameBound(input.size(), &prefs));
  size_t n = LZ4F_compressFrame(out.data(), out.size(), input.data(), input.size(), &prefs);
  // With a buffer of compressFrameBound bytes, compression cannot fail.
  if (LZ4F_isError(n)) std::abort();
  out.resize(n);
  return out;
}

Status Lz4DecompressChunk(std::span<const uint8_t> input, std::span<uint8_t> out,
                          const std::string& what, bool skip_lz4_checksums) {
  // One context per thread, reset for every chunk: creating one allocates lz4's block-sized
  // buffers, which cost more than decoding a small chunk.
  thread_local std::unique_ptr<LZ4F_dctx, DctxDeleter> dctx;
  if (!dctx) {
    LZ4F_dctx* raw = nullptr;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&raw, LZ4F_VERSION))) {
      return Status::IOError(what + ": cannot create an lz4 decompression context");
    }
    dctx.reset(raw);
  }
  LZ4F_resetDecompressionContext(dctx.get());
  LZ4F_decompressOptions_t options{};
  options.skipChecksums = skip_lz4_checksums ? 1 : 0;
  size_t in_pos = 0;
  size_t out_pos = 0;
  size_t hint = 1;
  while (hint != 0) {
    if (in_pos == input.size()) {
      return Status::Corruption(what + ": lz4 frame is truncated");
    }
    size_t in_size = input.size() - in_pos;
    size_t out_size = out.size() - out_pos;
    hint = LZ4F_decompress(dctx.get(), out.data() + out_pos, &out_size, input.data() + in_pos,
                           &in_size, &options);
    if (LZ4F_isError(hint)) {
      return Status::Corruption(what + ": lz4: " + LZ4F_getErrorName(hint));
    }
    in_pos += in_size;
    out_pos += out_size;
    if (in_size == 0 && out_size == 0 && hint != 0) {
      // No progress: the output is full but the frame wants to produce more.
      return Status::Corruption(what + ": lz4 frame expands beyond " + std::to_string(out.size()) +
                                " bytes");
    }
  }
  if (out_pos != out.size()) {
    return Status::Corruption(what + ": lz4 frame expands to " + std::to_string(out_pos) +
                              " bytes, expected " + std::to_string(out.size()));
  }
  if (in_pos != input.size()) {
    return Status::Corruption(what + ": " + std::to_string(input.size() - in_pos) +
                              " stray bytes after the lz4 frame");
  }
  return Status::Ok();
}

}  // namespace backupfs

namespace backupfs {

uint64_t Lz4MaxChunkStoredSize(uint64_t length) {
  // Worst case: 64 KiB blocks, each stored raw with a 4-byte size and a 4-byte checksum,
  // plus the frame header, end mark and content checksum.
  const uint64_t blocks = length / 65536 + 1;
  return length + blocks * 8 + 64;
}

Result<uint64_t> Lz4ChunkContentSize(std::span<const uint8_t> header, const std::string& what) {
  LZ4F_dctx* raw = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&raw, LZ4F_VERSION))) {
    return Status::IOError(what + ": cannot create an lz4 decompression context");
  }
  std::unique_ptr<LZ4F_dctx, DctxDeleter> dctx(raw);
  LZ4F_frameInfo_t info;
  size_t consumed = header.size();
  size_t r = LZ4F_getFrameInfo(dctx.get(), &info, header.data(), &consumed);
  if (LZ4F_isError(r)) {
    return Status::Corruption(what + ": not an lz4 frame: " + LZ4F_getErrorName(r));
  }
  if (info.contentSize == 0) {
    return Status::Corruption(what + ": lz4 frame does not record its content size");
  }
  return static_cast<uint64_t>(info.contentSize);
}

}  // namespace backupfs
