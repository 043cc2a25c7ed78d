// The 40-byte frame header of the stream format (man backupfs-stream(5)):
//   KIND SP START SP LENGTH CR LF
// KIND is four ASCII letters, START and LENGTH 16 hex digits each.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "stream/status.h"

namespace backupfs {

inline constexpr size_t kFrameHeaderSize = 40;
inline constexpr std::string_view kTerminator = "\r\n";

enum class FrameKind : uint8_t { kMeta, kData, kZero, kStop, kComp };

std::string_view FrameKindName(FrameKind kind);

struct FrameHeader {
  FrameKind kind;
  uint64_t start;   // offset on the virtual disk (0 for meta, stop, comp)
  uint64_t length;  // bytes of the virtual disk covered; payload size for meta and comp

  uint64_t end_offset() const { return start + length; }  // cannot overflow once decoded

  bool operator==(const FrameHeader&) const = default;
};

// The 40 header bytes, lowercase hex as virtnbdbackup writes them.
std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& header);

// Parses 40 header bytes. Accepts upper- or lowercase hex (as virtnbdbackup's reader does),
// nothing else: a wrong kind, separator, digit or terminator is Corruption naming `file` and
// `offset` (the header's position in the file).
Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes, const std::string& file,
                                      uint64_t offset);

}  // namespace backupfs
