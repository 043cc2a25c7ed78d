#include "stream/test_util.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "stream/lz4_blocks.h"

namespace backupfs::testing {

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp ? tmp : "/tmp") + "/bfs-test-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> out(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

std::vector<uint8_t> CompressibleBytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> out(n);
  const std::string text = "backupfs compressible test data " + std::to_string(seed) + " ";
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<uint8_t>(text[i % text.size()] ^ ((i >> 12) & 1));
  return out;
}

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

}  // namespace backupfs::testing

namespace backupfs::testing {

uint64_t StoredByteUnder(const std::string& path, const Chunk& chunk, uint64_t offset_in_chunk) {
  if (!chunk.compressed) return chunk.file_offset + offset_in_chunk;
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  auto layout = WalkLz4Frame(
      [&](uint64_t offset, std::span<uint8_t> out) {
        std::memcpy(out.data(), bytes.data() + chunk.file_offset + offset, out.size());
        return Status::Ok();
      },
      chunk.stored_size, chunk.length, path);
  if (!layout.ok()) throw std::runtime_error(layout.status().ToString());
  const Lz4Block& b = layout->blocks[layout->BlockAt(offset_in_chunk)];
  return chunk.file_offset + b.stored_offset + b.stored_size / 2;
}

}  // namespace backupfs::testing
