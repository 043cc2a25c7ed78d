// Checksums: XXH3-64 for the sidecar index, adler32 for virtnbdbackup's `.chksum` files.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

uint64_t Xxh3(std::span<const uint8_t> bytes);

// Running adler32 (as zlib's adler32(), start value 1) over a whole file written in pieces.
class Adler32 {
 public:
  void Update(std::span<const uint8_t> bytes);
  uint32_t value() const { return value_; }

 private:
  uint32_t value_ = 1;
};

// An Adler32 that can fold a large span in on a helper thread while the caller writes it:
// Start() then Wait() before the next Update()/Start(), so bytes are summed in file order.
class BackgroundAdler32 {
 public:
  BackgroundAdler32();
  ~BackgroundAdler32();
  BackgroundAdler32(const BackgroundAdler32&) = delete;
  BackgroundAdler32& operator=(const BackgroundAdler32&) = delete;

  void Update(std::span<const uint8_t> bytes) { sum_.Update(bytes); }
  // `bytes` must stay valid and unchanged until Wait() returns.
  void Start(std::span<const uint8_t> bytes);
  void Wait();
  uint32_t value() const { return sum_.value(); }

 private:
  void Run();
  Adler32 sum_;  // guarded by mu_ while a job runs
  std::mutex mu_;
  std::condition_variable cv_;
  std::span<const uint8_t> job_;  // guarded by mu_
  bool busy_ = false;             // guarded by mu_
  bool stop_ = false;             // guarded by mu_
  std::thread thread_;
};

// adler32 of a whole file, read in large blocks.
Result<uint32_t> Adler32OfFile(const std::string& path);

// The `.chksum` file: the decimal adler32 and nothing else.
Status WriteChecksumFile(const std::string& path, uint32_t adler, bool durable = true);
Status WriteChecksumFile(Storage& storage, std::string_view name, uint32_t adler,
                         bool durable = true);
// Reads a `.chksum` file; anything but a decimal 32-bit number (surrounding space allowed) is
// Corruption naming the file.
Result<uint32_t> ReadChecksumFile(const std::string& path);
Result<uint32_t> ReadChecksumFile(const Storage& storage, std::string_view name);

}  // namespace backupfs
