#include "backupfs/image.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

// Owner of each byte in [0, n): -1 for a hole, else the extent's file*1000 + chunk.
std::vector<int> Owners(const std::vector<ImageExtent>& extents, uint64_t n) {
  std::vector<int> owner(n, -1);
  for (const auto& e : extents) {
    for (uint64_t i = e.offset; i < e.end() && i < n; ++i) {
      owner[i] = static_cast<int>(e.file * 1000 + e.chunk);
    }
  }
  return owner;
}

std::vector<ImageExtent> RandomExtents(std::mt19937& rng, uint32_t file, uint64_t n) {
  std::vector<ImageExtent> out;
  uint64_t pos = rng() % 8;
  uint32_t chunk = 0;
  while (pos < n) {
    uint64_t len = 1 + rng() % 12;
    if (pos + len > n) break;
    if (rng() % 3 != 0) out.push_back({pos, len, rng() % 4 == 0, file, chunk++, 0});
    pos += len + (rng() % 2 ? rng() % 6 : 0);
  }
  return out;
}

TEST(OverlayTest, MatchesByteByByteOracle) {
  std::mt19937 rng(1);
  constexpr uint64_t kN = 120;
  for (int round = 0; round < 2000; ++round) {
    std::vector<ImageExtent> merged;
    std::vector<int> oracle(kN, -1);
    int files = 1 + static_cast<int>(rng() % 5);
    for (int f = 0; f < files; ++f) {
      auto top = RandomExtents(rng, static_cast<uint32_t>(f), kN);
      auto owners = Owners(top, kN);
      for (uint64_t i = 0; i < kN; ++i) {
        if (owners[i] >= 0) oracle[i] = owners[i];
      }
      merged = Overlay(merged, top);
    }
    ASSERT_EQ(Owners(merged, kN), oracle) << "round " << round;
    for (size_t i = 1; i < merged.size(); ++i) {
      ASSERT_LE(merged[i - 1].end(), merged[i].offset) << "round " << round;
      ASSERT_GT(merged[i].length, 0u);
    }
  }
}

TEST(OverlayTest, SliceKeepsChunkDelta) {
  std::vector<ImageExtent> base = {{0, 100, false, 0, 7, 0}};
  std::vector<ImageExtent> top = {{30, 10, false, 1, 0, 0}};
  auto m = Overlay(base, top);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[2].offset, 40u);
  EXPECT_EQ(m[2].chunk_delta, 40u);
  EXPECT_EQ(m[2].chunk, 7u);
}

// DiskImage over real chains: data files written with the stream writer into a scratch
// directory (StreamReader opens paths only), checked against a byte oracle built by applying
// the same frames to a plain vector.

using testing::RandomBytes;
using testing::ReadFileBytes;
using testing::ScratchDir;
using testing::WriteFileBytes;

// What the image must read as: the bytes, and which of them lie in data extents (the rest
// are zero extents or holes, which NextData/NextHole treat alike).
struct Oracle {
  std::vector<uint8_t> bytes;
  std::vector<bool> data;
};

struct Frame {
  bool data;
  uint64_t offset, length;
};

// Ascending, non-overlapping frames at unaligned offsets: data, zero, and gaps (holes).
std::vector<Frame> RandomFrames(std::mt19937_64& rng, uint64_t size) {
  std::vector<Frame> out;
  uint64_t pos = rng() % 3000;
  while (pos < size) {
    const uint64_t len = std::min<uint64_t>(1 + rng() % 40000, size - pos);
    const uint64_t pick = rng() % 10;
    if (pick < 6) out.push_back({true, pos, len});
    if (pick >= 6 && pick < 8) out.push_back({false, pos, len});
    pos += len;
  }
  return out;
}

// Writes one data file of `frames` (data bytes drawn from `seed`) and applies it to `oracle`.
void WriteChainFile(const std::string& path, const std::vector<Frame>& frames, uint64_t size,
                    bool lz4, uint64_t seed, Oracle* oracle) {
  StreamMetadata meta;
  meta.virtual_size = size;
  meta.disk_name = "vda";
  meta.checkpoint_name = "virtnbdbackup.0";
  for (const Frame& f : frames) meta.data_size += f.data ? f.length : 0;
  WriterOptions options;
  options.durable = false;
  options.checksum_granule = 8192;  // several chunks per frame, split off frame boundaries
  if (lz4) options.lz4_level = 1;
  auto w = StreamWriter::Create(path, meta, options);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  oracle->bytes.resize(size, 0);  // disks only grow here
  oracle->data.resize(size, false);
  for (const Frame& f : frames) {
    std::vector<uint8_t> bytes = f.data ? RandomBytes(f.length, seed++) : std::vector<uint8_t>();
    Status st = f.data ? (*w)->AddData(f.offset, bytes) : (*w)->AddZero(f.offset, f.length);
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (uint64_t i = 0; i < f.length; ++i) {
      oracle->bytes[f.offset + i] = f.data ? bytes[i] : 0;
      oracle->data[f.offset + i] = f.data;
    }
  }
  Status st = (*w)->Finish();
  ASSERT_TRUE(st.ok()) << st.ToString();
}

DiskChain OpenChain(const std::vector<std::string>& paths, const ReaderOptions& options) {
  DiskChain chain;
  chain.disk = "vda";
  for (const std::string& p : paths) {
    auto r = StreamReader::Open(p, options);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    chain.virtual_size = (*r)->meta().virtual_size;
    chain.files.push_back(std::move(r).value());
  }
  return chain;
}

std::string CompressionName(const ::testing::TestParamInfo<bool>& p) {
  return p.param ? "Lz4" : "Plain";
}

class ImageOracleTest : public ::testing::TestWithParam<bool> {
 protected:
  bool lz4() const { return GetParam(); }
  // A chain of 1..5 files over a disk that grows now and then; returns the file paths.
  std::vector<std::string> RandomChain(std::mt19937_64& rng, int round) {
    std::vector<std::string> paths;
    uint64_t size = 50000 + rng() % 200000;
    const int files = 1 + static_cast<int>(rng() % 5);
    oracle_ = {};
    for (int f = 0; f < files; ++f) {
      if (rng() % 3 == 0) size += rng() % 60000;
      paths.push_back(dir_.File("r" + std::to_string(round) + "." + std::to_string(f) + ".data"));
      WriteChainFile(paths.back(), RandomFrames(rng, size), size, lz4(), rng(), &oracle_);
    }
    return paths;
  }
  // A random range inside [0, size]: unaligned, often spanning holes and file boundaries.
  static std::pair<uint64_t, uint64_t> RandomRange(std::mt19937_64& rng, uint64_t size) {
    const uint64_t offset = rng() % (size + 1);
    const uint64_t max = std::min<uint64_t>(size - offset, rng() % 4 == 0 ? size : 70000);
    return {offset, max == 0 ? 0 : rng() % (max + 1)};
  }
  bool AnyData(uint64_t offset, uint64_t length) const {
    auto first = oracle_.data.begin() + static_cast<std::ptrdiff_t>(offset);
    return std::find(first, first + static_cast<std::ptrdiff_t>(length), true) !=
           first + static_cast<std::ptrdiff_t>(length);
  }

  ScratchDir dir_;
  Oracle oracle_;
};

TEST_P(ImageOracleTest, ReadMatchesOracleOverRandomChains) {
  std::mt19937_64 rng(lz4() ? 11 : 10);
  for (int round = 0; round < 25; ++round) {
    auto image = DiskImage::Build(OpenChain(RandomChain(rng, round), {}));
    ASSERT_EQ(image->size(), oracle_.bytes.size());
    std::vector<uint8_t> all(image->size());
    ASSERT_TRUE(image->Read(0, all).ok());
    ASSERT_TRUE(all == oracle_.bytes) << "round " << round;
    for (int i = 0; i < 200; ++i) {
      auto [offset, length] = RandomRange(rng, image->size());
      std::vector<uint8_t> got(length, 0xee);
      Status st = image->Read(offset, got);
      ASSERT_TRUE(st.ok()) << st.ToString();
      // std::equal, not memcmp: an empty read has no data pointer.
      ASSERT_TRUE(std::equal(got.begin(), got.end(),
                             oracle_.bytes.begin() + static_cast<std::ptrdiff_t>(offset)))
          << "round " << round << " read of " << length << " at " << offset;
    }
    std::vector<uint8_t> past(2);
    EXPECT_FALSE(image->Read(image->size() - 1, past).ok());
  }
}

// Checks pieces from RawPieces against the oracle: file bytes where fd >= 0, zeros elsewhere.
void ExpectPiecesMatch(const std::vector<DiskImage::RawPiece>& pieces, const Oracle& oracle,
                       uint64_t offset, uint64_t length) {
  uint64_t pos = offset;
  for (const DiskImage::RawPiece& p : pieces) {
    std::vector<uint8_t> got(p.length, 0);
    if (p.fd >= 0) {
      ASSERT_EQ(::pread(p.fd, got.data(), got.size(), static_cast<off_t>(p.file_offset)),
                static_cast<ssize_t>(got.size()));
    }
    ASSERT_LE(pos + p.length, oracle.bytes.size());
    ASSERT_TRUE(
        std::equal(got.begin(), got.end(), oracle.bytes.begin() + static_cast<std::ptrdiff_t>(pos)))
        << "piece at " << pos << " of a raw read of " << length << " at " << offset;
    pos += p.length;
  }
  EXPECT_EQ(pos, offset + length);
}

TEST_P(ImageOracleTest, RawPiecesMatchOracle) {
  std::mt19937_64 rng(lz4() ? 21 : 20);
  for (bool verify : {false, true}) {
    ReaderOptions options;
    options.verify_checksums = verify;
    // Data served raw only when stored plain and not to be checked on this read.
    const bool raw_data = !lz4() && !verify;
    for (int round = 0; round < 15; ++round) {
      auto image = DiskImage::Build(OpenChain(RandomChain(rng, round), options));
      for (int i = 0; i < 200; ++i) {
        auto [offset, length] = RandomRange(rng, image->size());
        std::vector<DiskImage::RawPiece> pieces;
        const bool raw = image->RawPieces(offset, length, &pieces);
        ASSERT_EQ(raw, raw_data || !AnyData(offset, length)) << offset << "+" << length;
        if (raw) ExpectPiecesMatch(pieces, oracle_, offset, length);
      }
    }
  }
}

TEST_P(ImageOracleTest, NextDataAndNextHoleMatchOracle) {
  std::mt19937_64 rng(lz4() ? 31 : 30);
  for (int round = 0; round < 15; ++round) {
    auto image = DiskImage::Build(OpenChain(RandomChain(rng, round), {}));
    const std::vector<bool>& data = oracle_.data;
    const uint64_t size = image->size();
    for (uint64_t offset = 0; offset <= size; offset += 1 + rng() % 700) {
      auto from = data.begin() + static_cast<std::ptrdiff_t>(offset);
      const auto next_data =
          static_cast<uint64_t>(std::find(from, data.end(), true) - data.begin());
      const auto next_hole =
          static_cast<uint64_t>(std::find(from, data.end(), false) - data.begin());
      ASSERT_EQ(image->NextData(offset), next_data) << "round " << round << " at " << offset;
      ASSERT_EQ(image->NextHole(offset), next_hole) << "round " << round << " at " << offset;
    }
    EXPECT_EQ(image->NextData(size), size);
    EXPECT_EQ(image->NextHole(size), size);
  }
}

INSTANTIATE_TEST_SUITE_P(Compression, ImageOracleTest, ::testing::Bool(), CompressionName);

class ImageCorruptionTest : public ImageOracleTest {};

// A flipped byte in the full backup's chunk under [512 KiB, +1): outside the first and last
// 64 KiB that tie the sidecar index to its file, so the index loads and its checksum (or
// lz4's) must catch the flip.
TEST_P(ImageCorruptionTest, CorruptChunkFailsReadNamingTheFile) {
  constexpr uint64_t kSize = 2u << 20;
  const std::string full = dir_.File("vda.full.data");
  const std::string inc = dir_.File("vda.inc.virtnbdbackup.1.data");
  WriteChainFile(full, {{true, 0, kSize - 100}}, kSize, lz4(), 1, &oracle_);
  WriteChainFile(inc, {{true, 1000, 3000}, {false, 1u << 20, 5000}}, kSize, lz4(), 9, &oracle_);
  Chunk victim;
  {
    auto r = StreamReader::Open(full);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    victim = (*r)->index().chunks[(*r)->index().Find(512u << 10, 1).first];
  }
  auto bytes = ReadFileBytes(full);
  bytes[testing::StoredByteUnder(full, victim, (512u << 10) - victim.offset)] ^= 0x10;
  WriteFileBytes(full, bytes);

  auto image = DiskImage::Build(OpenChain({full, inc}, {}));
  std::vector<uint8_t> buf(100000);
  Status st = image->Read((512u << 10) - 50000, buf);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(full), std::string::npos) << st.ToString();
  std::vector<uint8_t> all(kSize);
  EXPECT_FALSE(image->Read(0, all).ok());
  // Where the flip is not under the read, the bytes come back right: the inc's own range,
  // and (uncompressed, split in 8 KiB chunks) the full's other chunks.
  std::vector<uint8_t> small(2000);
  ASSERT_TRUE(image->Read(1500, small).ok());
  EXPECT_EQ(0, std::memcmp(small.data(), oracle_.bytes.data() + 1500, small.size()));
}

INSTANTIATE_TEST_SUITE_P(Compression, ImageCorruptionTest, ::testing::Bool(), CompressionName);

}  // namespace
}  // namespace backupfs
