// libFuzzer target: the sidecar index decoder and the chunk rules.
#include <cstdint>

#include "stream/index.h"

using namespace backupfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<StreamIndex> index = DecodeIndex(std::span(data, size), "fuzz.idx");
  if (!index.ok()) return 0;
  (void)ValidateChunks(*index, UINT64_MAX, 0, UINT64_MAX, "fuzz.idx");
  if (!index->chunks.empty()) (void)index->Find(index->chunks.front().offset, 4096);
  return 0;
}
