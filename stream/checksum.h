// Checksums: XXH3-64 for the sidecar index, adler32 for virtnbdbackup's `.chksum` files.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "stream/status.h"

namespace backupfs {

uint64_t Xxh3(std::span<const uint8_t> bytes);

// Running adler32 (zlib's, start value 1) over a whole file written in pieces.
class Adler32 {
 public:
  void Update(std::span<const uint8_t> bytes);
  uint32_t value() const { return value_; }

 private:
  uint32_t value_ = 1;
};

// adler32 of a whole file, read in large blocks.
Result<uint32_t> Adler32OfFile(const std::string& path);

// The `.chksum` file: the decimal adler32 and nothing else.
Status WriteChecksumFile(const std::string& path, uint32_t adler);
// Reads a `.chksum` file; anything but a decimal 32-bit number (surrounding space allowed) is
// Corruption naming the file.
Result<uint32_t> ReadChecksumFile(const std::string& path);

}  // namespace backupfs
