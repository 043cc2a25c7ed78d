#include "stream/frame.h"

#include <cstdio>

namespace backupfs {
namespace {

constexpr std::array<std::string_view, 5> kKindNames = {"meta", "data", "zero", "stop", "comp"};

std::string At(const std::string& file, uint64_t offset) {
  return file + ": offset " + std::to_string(offset) + ": ";
}

// Printable form of header bytes for messages: non-printables as '?'.
std::string Printable(std::span<const uint8_t> bytes) {
  std::string out;
  for (uint8_t c : bytes) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

int HexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// 16 hex digits at bytes[pos..pos+16) -> value, or the index of the first bad digit.
bool ParseHex16(std::span<const uint8_t> bytes, size_t pos, uint64_t* value, size_t* bad) {
  uint64_t v = 0;
  for (size_t i = pos; i < pos + 16; ++i) {
    int d = HexValue(bytes[i]);
    if (d < 0) {
      *bad = i;
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *value = v;
  return true;
}

}  // namespace

std::string_view FrameKindName(FrameKind kind) { return kKindNames[static_cast<size_t>(kind)]; }

std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(const FrameHeader& header) {
  std::array<uint8_t, kFrameHeaderSize> out;
  char text[kFrameHeaderSize + 1];
  std::snprintf(text, sizeof(text), "%s %016llx %016llx\r\n",
                std::string(FrameKindName(header.kind)).c_str(),
                static_cast<unsigned long long>(header.start),
                static_cast<unsigned long long>(header.length));
  std::copy(text, text + kFrameHeaderSize, out.begin());
  return out;
}

Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes, const std::string& file,
                                      uint64_t offset) {
  if (bytes.size() < kFrameHeaderSize) {
    return Status::Corruption(At(file, offset) + "truncated frame header (" +
                              std::to_string(bytes.size()) + " of 40 bytes)");
  }
  bytes = bytes.first(kFrameHeaderSize);
  std::string_view kind_text(reinterpret_cast<const char*>(bytes.data()), 4);
  FrameHeader h{};
  bool known = false;
  for (size_t i = 0; i < kKindNames.size(); ++i) {
    if (kind_text == kKindNames[i]) {
      h.kind = static_cast<FrameKind>(i);
      known = true;
    }
  }
  if (!known) {
    return Status::Corruption(At(file, offset) + "not a frame header: unknown kind '" +
                              Printable(bytes.first(4)) + "'");
  }
  if (bytes[4] != ' ' || bytes[21] != ' ' || bytes[38] != '\r' || bytes[39] != '\n') {
    return Status::Corruption(At(file, offset) + "malformed frame header '" + Printable(bytes) +
                              "'");
  }
  size_t bad = 0;
  if (!ParseHex16(bytes, 5, &h.start, &bad) || !ParseHex16(bytes, 22, &h.length, &bad)) {
    return Status::Corruption(At(file, offset + bad) + "non-hex digit in frame header '" +
                              Printable(bytes) + "'");
  }
  if (h.start > UINT64_MAX - h.length) {
    return Status::Corruption(At(file, offset) + "frame start + length overflows 64 bits");
  }
  return h;
}

}  // namespace backupfs
