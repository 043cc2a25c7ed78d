// Helpers for the stream unit tests: scratch directories and deterministic test data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace backupfs::testing
