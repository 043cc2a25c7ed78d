// libFuzzer target: a whole data file through the scanner, the index built from it, and the
// decoding of its lz4 chunks. Invariant: whatever the scanner accepts yields an index that
// ValidateChunks accepts and that matches the layout.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "stream/file.h"
#include "stream/lz4_chunk.h"
#include "stream/scanner.h"

using namespace backupfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  MemorySource src(std::span(data, size), "fuzz.data");
  Result<StreamLayout> layout = ScanStream(src);
  if (!layout.ok()) return 0;
  StreamIndex index = IndexFromLayout(*layout, {});
  if (!ValidateChunks(index, layout->meta.virtual_size, layout->payload_begin,
                      layout->meta.compressed() ? layout->stop_offset : size, "fuzz")
           .ok() ||
      !CheckIndexMatchesLayout(index, *layout, "fuzz").ok()) {
    std::abort();  // the scanner accepted a layout the index rules reject
  }
  for (const Chunk& c : index.chunks) {
    if (!c.compressed || c.length > (1u << 20)) continue;
    std::vector<uint8_t> out(c.length);
    (void)Lz4DecompressChunk(std::span(data + c.file_offset, c.stored_size), out, "fuzz");
  }
  return 0;
}
