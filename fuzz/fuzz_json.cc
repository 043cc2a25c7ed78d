// libFuzzer target: the small text parsers (frame header, metadata JSON, compression trailer).
#include <cstdint>
#include <string_view>

#include "stream/frame.h"
#include "stream/metadata.h"
#include "stream/trailer.h"

using namespace backupfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)DecodeFrameHeader(std::span(data, size), "fuzz", 0);
  (void)DecodeMetadata(text, "fuzz", 0);
  (void)DecodeTrailer(text, "fuzz", 0);
  return 0;
}
