// Helpers for the stream unit tests: scratch directories and deterministic test data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stream/index.h"

namespace backupfs::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Pseudo-random bytes from a seed (xorshift), reproducible across runs.
std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed);
// Bytes that compress well: repeating text with the offset mixed in.
std::vector<uint8_t> CompressibleBytes(size_t n, uint64_t seed);

std::vector<uint8_t> ReadFileBytes(const std::string& path);
void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes);

// The file offset of a stored byte that the content byte `offset_in_chunk` of `chunk` (of the
// data file at `path`) depends on: that byte itself in an uncompressed chunk, the middle of
// the stored lz4 block holding it in a compressed one. Flipping it damages that read.
uint64_t StoredByteUnder(const std::string& path, const Chunk& chunk, uint64_t offset_in_chunk);

}  // namespace backupfs::testing
