#include "restore/copy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <random>

#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::RandomBytes;
using testing::ScratchDir;

// An image in memory that records which bytes were written; thread-safe like the real ones.
class MemoryWriter final : public ImageWriter {
 public:
  MemoryWriter(uint64_t size, bool zeroed, uint64_t grain = 1)
      : bytes_(size, zeroed ? 0 : 0xff), zeroed_(zeroed), grain_(grain) {
    written_.resize(size, false);
  }
  unsigned lanes() const override { return 3; }
  uint64_t grain() const override { return grain_; }
  Status Write(unsigned lane, uint64_t offset, std::span<const uint8_t> b) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_LT(lane, lanes());
    if (offset + b.size() > bytes_.size()) return Status::InvalidArgument("past the end");
    EXPECT_EQ(offset % grain_, 0u);
    EXPECT_TRUE((offset + b.size()) % grain_ == 0 || offset + b.size() == bytes_.size());
    EXPECT_EQ(std::count(written_.begin() + static_cast<std::ptrdiff_t>(offset),
                         written_.begin() + static_cast<std::ptrdiff_t>(offset + b.size()), true),
              0)
        << "bytes at " << offset << " written twice";
    if (fail_at_ >= offset && fail_at_ < offset + b.size()) {
      return Status::FromErrno("cannot write img at offset " + std::to_string(offset), ENOSPC);
    }
    std::copy(b.begin(), b.end(), bytes_.begin() + static_cast<std::ptrdiff_t>(offset));
    std::fill_n(written_.begin() + static_cast<std::ptrdiff_t>(offset), b.size(), true);
    return Status::Ok();
  }
  Status Zero(unsigned, uint64_t offset, uint64_t length) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_FALSE(zeroed_) << "a zeroed image needs no Zero()";
    std::fill_n(bytes_.begin() + static_cast<std::ptrdiff_t>(offset), length, 0);
    return Status::Ok();
  }
  bool zeroed_at_start() const override { return zeroed_; }
  Status Finish() override { return Status::Ok(); }
  const std::string& path() const override { return path_; }

  std::vector<uint8_t> bytes_;
  std::vector<bool> written_;
  uint64_t fail_at_ = UINT64_MAX;

 private:
  const bool zeroed_;
  const uint64_t grain_;
  std::mutex mu_;
  const std::string path_ = "img";
};

constexpr uint64_t kMiB = 1u << 20;

struct Frame {
  enum Kind { kData, kZeroData, kZero } kind;
  uint64_t offset, length;
};

class CopyTest : public ::testing::TestWithParam<bool> {
 protected:
  // A data file of `frames` applied to the oracle; kZeroData is a data frame of zero bytes.
  std::string WriteFile(const std::string& name, const std::vector<Frame>& frames, uint64_t size,
                        bool incremental, uint64_t seed) {
    StreamMetadata meta;
    meta.virtual_size = size;
    meta.disk_name = "vda";
    meta.incremental = incremental;
    for (const Frame& f : frames) meta.data_size += f.kind == Frame::kZero ? 0 : f.length;
    WriterOptions options;
    options.durable = false;
    if (GetParam()) options.lz4_level = 1;
    const std::string path = dir_.File(name);
    auto w = StreamWriter::Create(path, meta, options);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    oracle_.resize(size, 0);
    for (const Frame& f : frames) {
      std::vector<uint8_t> b = f.kind == Frame::kData ? RandomBytes(f.length, seed++)
                                                      : std::vector<uint8_t>(f.length, 0);
      Status s =
          f.kind == Frame::kZero ? (*w)->AddZero(f.offset, f.length) : (*w)->AddData(f.offset, b);
      EXPECT_TRUE(s.ok()) << s.ToString();
      std::copy(b.begin(), b.end(), oracle_.begin() + static_cast<std::ptrdiff_t>(f.offset));
    }
    EXPECT_TRUE((*w)->Finish().ok());
    return path;
  }

  // full: data, a data frame of zeros, unaligned data; inc: new data over a zero frame and a
  // zero frame over old data (a trim).
  std::shared_ptr<DiskImage> Chain(uint64_t size = 24 * kMiB) {
    DiskChain chain;
    chain.disk = "vda";
    chain.virtual_size = size;
    for (const std::string& p :
         {WriteFile("vda.full.data",
                    {{Frame::kData, 0, 9 * kMiB + 12345},
                     {Frame::kZeroData, 10 * kMiB, 3 * kMiB},
                     {Frame::kData, 14 * kMiB + 777, 2 * kMiB}},
                    size, false, 1),
          WriteFile("vda.inc.virtnbdbackup.1.data",
                    {{Frame::kZero, 1 * kMiB, 2 * kMiB}, {Frame::kData, 20 * kMiB, 65536 * 3}},
                    size, true, 100)}) {
      auto r = StreamReader::Open(p);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      chain.files.push_back(std::move(r).value());
    }
    return DiskImage::Build(chain);
  }

  ScratchDir dir_;
  std::vector<uint8_t> oracle_;
};

bool AllZero(const std::vector<uint8_t>& b, uint64_t from, uint64_t to) {
  return std::all_of(b.begin() + static_cast<std::ptrdiff_t>(from),
                     b.begin() + static_cast<std::ptrdiff_t>(to), [](uint8_t x) { return x == 0; });
}

TEST_P(CopyTest, ThinImageEqualsTheRestorePoint) {
  auto image = Chain();
  MemoryWriter out(image->size(), /*zeroed=*/true);
  uint64_t progressed = 0;
  std::mutex mu;
  CopyOptions o;
  o.piece_bytes = 1 * kMiB;
  o.progress = [&](uint64_t n) {
    std::lock_guard<std::mutex> lock(mu);
    progressed += n;
  };
  auto stats = CopyImage(*image, out, o);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(out.bytes_, oracle_);
  EXPECT_EQ(stats->data_bytes, BytesToRead(*image, out, o));
  EXPECT_EQ(progressed, stats->data_bytes);
  // Thin: no 64 KiB block that reads as zeros was written (the trim, the zero data frame).
  for (uint64_t b = 0; b < image->size(); b += kZeroBlock) {
    const uint64_t end = std::min(b + kZeroBlock, image->size());
    if (AllZero(oracle_, b, end)) {
      EXPECT_FALSE(std::find(out.written_.begin() + b, out.written_.begin() + end, true) !=
                   out.written_.begin() + end)
          << "zero block at " << b << " was written";
    }
  }
  EXPECT_LT(stats->written_bytes, stats->data_bytes);
}

TEST_P(CopyTest, WritesWholeGrainsOnceForAQcow2Writer) {
  auto image = Chain(24 * kMiB + 512);  // the last 256 KiB grain ends inside the image
  MemoryWriter out(image->size(), /*zeroed=*/true, /*grain=*/256 * 1024);
  auto stats = CopyImage(*image, out, {});
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(out.bytes_, oracle_);
}

TEST_P(CopyTest, DeviceThatKeepsOldBytesIsZeroedWhereThePointHasNoData) {
  auto image = Chain();
  MemoryWriter out(image->size(), /*zeroed=*/false);  // starts as 0xff everywhere
  auto stats = CopyImage(*image, out, {});
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(out.bytes_, oracle_);
}

TEST_P(CopyTest, WriteErrorStopsTheCopyAndIsReturned) {
  auto image = Chain();
  MemoryWriter out(image->size(), true);
  out.fail_at_ = 5 * kMiB;
  auto stats = CopyImage(*image, out, {});
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.status().message().find("No space left"), std::string::npos)
      << stats.status().ToString();
}

TEST_P(CopyTest, CancelBeforeTheFirstPieceWritesNothing) {
  auto image = Chain();
  MemoryWriter out(image->size(), true);
  std::atomic<bool> cancel{true};
  CopyOptions o;
  o.cancel = &cancel;
  auto stats = CopyImage(*image, out, o);
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(std::count(out.written_.begin(), out.written_.end(), true), 0);
}

TEST_P(CopyTest, CorruptChunkFailsNamingTheFile) {
  Chain();
  // Flip a stored byte under the middle of the full backup's first data chunk and copy the
  // full backup's point anew: the sidecar index's XXH3 (plain) or lz4's checksums must catch
  // it. (Only the full: with lz4 read by block, a byte under a range that the incremental
  // overwrites is never read, rightly.)
  const std::string full = dir_.File("vda.full.data");
  Chunk victim;
  {
    auto r = StreamReader::Open(full);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    auto it = std::find_if(r.value()->index().chunks.begin(), r.value()->index().chunks.end(),
                           [](const Chunk& c) { return c.kind == ChunkKind::kData; });
    ASSERT_NE(it, r.value()->index().chunks.end());
    victim = *it;
  }
  std::vector<uint8_t> bytes = testing::ReadFileBytes(full);
  bytes[testing::StoredByteUnder(full, victim, victim.length / 2)] ^= 0x55;
  testing::WriteFileBytes(full, bytes);
  DiskChain chain;
  chain.disk = "vda";
  chain.virtual_size = 24 * kMiB;
  auto r = StreamReader::Open(full);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  chain.files.push_back(std::move(r).value());
  auto image = DiskImage::Build(chain);
  MemoryWriter out(image->size(), true);
  auto stats = CopyImage(*image, out, {});
  ASSERT_FALSE(stats.ok()) << "a corrupt chunk was copied";
  EXPECT_NE(stats.status().message().find(full), std::string::npos) << stats.status().ToString();
}

TEST_P(CopyTest, PieceSizeMustFollowTheZeroGrid) {
  auto image = Chain();
  MemoryWriter out(image->size(), true);
  CopyOptions o;
  o.piece_bytes = 100000;
  EXPECT_EQ(CopyImage(*image, out, o).status().code(), StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Compression, CopyTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Lz4" : "Plain";
                         });

}  // namespace
}  // namespace backupfs
