// The block walk and single-block decodes of lz4 frames, against lz4's own whole-frame output;
// and StreamReader's block-level reads of linked frames (virtnbdbackup's) through restart
// points, compared byte for byte with the content at random offsets.
#include "stream/lz4_blocks.h"

#include <gtest/gtest.h>
#include <lz4frame.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "stream/frame.h"
#include "stream/metadata.h"
#include "stream/reader.h"
#include "stream/test_util.h"
#include "stream/trailer.h"

namespace backupfs {
namespace {

using testing::CompressibleBytes;
using testing::RandomBytes;

constexpr size_t kBlock = 64 * 1024;

// Content whose blocks are of both kinds: compressible ones, and random ones that lz4 stores
// uncompressed (a random 64 KiB run every fifth block). Not a multiple of the block size.
std::vector<uint8_t> MixedContent(size_t size, uint64_t seed) {
  std::vector<uint8_t> c = CompressibleBytes(size, seed);
  for (size_t off = 2 * kBlock; off + kBlock <= size; off += 5 * kBlock) {
    auto r = RandomBytes(kBlock, seed + off);
    std::memcpy(c.data() + off, r.data(), kBlock);
  }
  return c;
}

// Text-like content: words from a random vocabulary, so that lz4's matches reach anywhere in
// the 64 KiB before them (CompressibleBytes' short period only reaches just back).
std::vector<uint8_t> WordyContent(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> words(3000);
  for (std::string& w : words) {
    w.resize(3 + rng() % 9);
    for (char& c : w) c = static_cast<char>('a' + rng() % 26);
  }
  std::vector<uint8_t> c;
  c.reserve(size + 16);
  while (c.size() < size) {
    const std::string& w = words[rng() % words.size()];
    c.insert(c.end(), w.begin(), w.end());
    c.push_back(rng() % 8 == 0 ? '\n' : ' ');
  }
  c.resize(size);
  return c;
}

// One frame as lz4 writes it: 64 KiB blocks, linked (virtnbdbackup's python lz4.frame) or not.
std::vector<uint8_t> Frame(std::span<const uint8_t> content, bool linked, bool block_checksums) {
  LZ4F_preferences_t p = LZ4F_INIT_PREFERENCES;
  p.frameInfo.blockSizeID = LZ4F_max64KB;
  p.frameInfo.blockMode = linked ? LZ4F_blockLinked : LZ4F_blockIndependent;
  p.frameInfo.blockChecksumFlag =
      block_checksums ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum;
  p.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
  p.frameInfo.contentSize = content.size();
  std::vector<uint8_t> out(LZ4F_compressFrameBound(content.size(), &p));
  size_t n = LZ4F_compressFrame(out.data(), out.size(), content.data(), content.size(), &p);
  EXPECT_FALSE(LZ4F_isError(n));
  out.resize(n);
  return out;
}

FrameReadFn MemoryRead(const std::vector<uint8_t>& frame) {
  return [&frame](uint64_t offset, std::span<uint8_t> out) -> Status {
    if (offset > frame.size() || out.size() > frame.size() - offset) {
      return Status::Corruption("test frame: read past its end");
    }
    std::memcpy(out.data(), frame.data() + offset, out.size());
    return Status::Ok();
  };
}

struct Param {
  bool linked;
  bool block_checksums;
};

class Lz4BlocksTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    content_ = MixedContent(20 * kBlock + 1234, 7);
    frame_ = Frame(content_, GetParam().linked, GetParam().block_checksums);
  }
  Lz4FrameLayout Walk() {
    auto l = WalkLz4Frame(MemoryRead(frame_), frame_.size(), content_.size(), "f.data");
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? *l : Lz4FrameLayout{};
  }
  std::span<const uint8_t> Stored(const Lz4Block& b) const {
    return std::span(frame_).subspan(b.stored_offset, b.stored_size);
  }
  std::vector<uint8_t> content_, frame_;
};

// The cases that only linked blocks have (a dictionary, a window), for both checksum settings.
class LinkedLz4BlocksTest : public Lz4BlocksTest {};

TEST_P(Lz4BlocksTest, WalkFindsEveryBlockFromItsHeader) {
  Lz4FrameLayout l = Walk();
  ASSERT_EQ(l.blocks.size(), 21u);
  EXPECT_EQ(l.linked, GetParam().linked);
  EXPECT_EQ(l.block_checksums, GetParam().block_checksums);
  EXPECT_EQ(l.block_max, kBlock);
  size_t raw = 0;
  for (size_t i = 0; i < l.blocks.size(); ++i) {
    EXPECT_EQ(l.blocks[i].content_offset, i * kBlock);
    raw += l.blocks[i].raw;
  }
  EXPECT_EQ(l.blocks.back().content_size, 1234u);
  EXPECT_GE(raw, 3u);               // the random runs
  EXPECT_LT(raw, l.blocks.size());  // and compressed ones
  EXPECT_EQ(l.BlockAt(0), 0u);
  EXPECT_EQ(l.BlockAt(kBlock - 1), 0u);
  EXPECT_EQ(l.BlockAt(kBlock), 1u);
  EXPECT_EQ(l.BlockAt(content_.size() - 1), 20u);
}

TEST_P(Lz4BlocksTest, WholeDecodeLearnsTheSameLayoutAndContent) {
  std::vector<uint8_t> out(content_.size());
  auto l = DecodeLz4Frame(frame_, out, true, "f.data");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(out, content_);
  Lz4FrameLayout walked = Walk();
  ASSERT_EQ(l->blocks.size(), walked.blocks.size());
  for (size_t i = 0; i < walked.blocks.size(); ++i) {
    EXPECT_EQ(l->blocks[i].content_offset, walked.blocks[i].content_offset);
    EXPECT_EQ(l->blocks[i].content_size, walked.blocks[i].content_size);
  }
}

// Block by block into separate buffers (the cache's): the same layout and content, and a
// flipped content byte is a content checksum mismatch (the frame has one; blocks checksums or
// not).
std::vector<uint8_t> DecodeInBlocks(const std::vector<uint8_t>& frame, size_t content_size,
                                    Status* status, Lz4FrameLayout* layout) {
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<uint8_t> joined;
  auto l = DecodeLz4FrameInBlocks(
      frame, content_size,
      [&](size_t i, size_t room) {
        EXPECT_EQ(i, bufs.size());
        bufs.emplace_back(room);
        return std::span<uint8_t>(bufs.back());
      },
      [&](size_t i, std::span<const uint8_t> c) {
        EXPECT_EQ(c.data(), bufs[i].data());
        joined.insert(joined.end(), c.begin(), c.end());
      },
      "f.data");
  *status = l.status();
  if (l.ok()) *layout = *l;
  return joined;
}

TEST_P(Lz4BlocksTest, DecodeInBlocksLearnsTheSameLayoutAndContent) {
  Status s;
  Lz4FrameLayout l;
  EXPECT_EQ(DecodeInBlocks(frame_, content_.size(), &s, &l), content_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  Lz4FrameLayout walked = Walk();
  ASSERT_EQ(l.blocks.size(), walked.blocks.size());
  for (size_t i = 0; i < walked.blocks.size(); ++i) {
    EXPECT_EQ(l.blocks[i].content_offset, walked.blocks[i].content_offset);
    EXPECT_EQ(l.blocks[i].content_size, walked.blocks[i].content_size);
  }
}

TEST_P(Lz4BlocksTest, DecodeInBlocksChecksTheContent) {
  // The content checksum is the frame's last 4 bytes: damage it, the blocks still decode.
  frame_[frame_.size() - 2] ^= 0x01;
  Status s;
  Lz4FrameLayout l;
  DecodeInBlocks(frame_, content_.size(), &s, &l);
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("content checksum mismatch"), std::string::npos) << s.ToString();
}

// Every block alone, with the content before it as dictionary when linked (a restart point).
TEST_P(Lz4BlocksTest, SingleBlocksDecodeAloneLikeTheWholeFrame) {
  Lz4FrameLayout l = Walk();
  for (size_t i = 0; i < l.blocks.size(); ++i) {
    const Lz4Block& b = l.blocks[i];
    ASSERT_TRUE(CheckLz4Block(l, b, Stored(b), "f.data").ok());
    std::span<const uint8_t> dict;
    if (l.linked) dict = std::span(content_).first(b.content_offset);
    std::vector<uint8_t> out(b.content_size);
    Status s = DecodeLz4Block(b, Stored(b), dict, out, "f.data");
    ASSERT_TRUE(s.ok()) << "block " << i << ": " << s.ToString();
    EXPECT_EQ(0, std::memcmp(out.data(), content_.data() + b.content_offset, out.size())) << i;
  }
}

TEST_P(LinkedLz4BlocksTest, ALinkedBlockWithoutItsDictionaryFails) {
  Lz4FrameLayout l = Walk();
  size_t failed = 0;
  for (size_t i = 1; i < l.blocks.size(); ++i) {
    const Lz4Block& b = l.blocks[i];
    if (b.raw) continue;
    std::vector<uint8_t> out(b.content_size);
    Status s = DecodeLz4Block(b, Stored(b), {}, out, "f.data");
    failed += !s.ok() || std::memcmp(out.data(), content_.data() + b.content_offset, out.size());
  }
  EXPECT_GT(failed, 0u);  // else the test content would not exercise the dictionary
}

// A linked block decodes with only the window bytes its matches read in place (the rest
// garbage), for mixed and for text-like content; and those bytes do matter.
TEST_P(LinkedLz4BlocksTest, SparseWindowsDecodeLikeTheWholeWindow) {
  for (int kind = 0; kind < 2; ++kind) {
    content_ = kind == 0 ? MixedContent(20 * kBlock + 1234, 7) : WordyContent(20 * kBlock + 99, 8);
    frame_ = Frame(content_, true, GetParam().block_checksums);
    Lz4FrameLayout l = Walk();
    size_t referenced = 0, mattered = 0;
    std::mt19937_64 rng(kind);
    for (size_t i = 1; i < l.blocks.size(); ++i) {
      const Lz4Block& b = l.blocks[i];
      if (b.raw) continue;
      auto refs = Lz4WindowReferences(Stored(b), kBlock, "f.data");
      ASSERT_TRUE(refs.ok()) << refs.status().ToString();
      std::vector<uint8_t> window(kBlock);
      for (uint8_t& x : window) x = static_cast<uint8_t>(rng());
      const uint8_t* real = content_.data() + b.content_offset - kBlock;
      uint32_t last_end = 0;
      for (const WindowRange& r : *refs) {
        ASSERT_LT(r.begin, r.end);
        ASSERT_LE(r.end, kBlock);
        ASSERT_TRUE(r.begin > last_end || last_end == 0) << "ranges sorted and merged";
        last_end = r.end;
        std::memcpy(window.data() + r.begin, real + r.begin, r.end - r.begin);
        referenced += r.end - r.begin;
      }
      std::vector<uint8_t> out(b.content_size);
      Status s = DecodeLz4Block(b, Stored(b), window, out, "f.data");
      ASSERT_TRUE(s.ok()) << "block " << i << ": " << s.ToString();
      ASSERT_EQ(0, std::memcmp(out.data(), content_.data() + b.content_offset, out.size()))
          << "kind " << kind << " block " << i;
      if (refs->empty()) continue;
      window[(*refs)[0].begin] ^= 0x5a;  // a byte the block reads
      s = DecodeLz4Block(b, Stored(b), window, out, "f.data");
      mattered +=
          !s.ok() || std::memcmp(out.data(), content_.data() + b.content_offset, out.size());
    }
    EXPECT_GT(referenced, 0u) << "kind " << kind;
    EXPECT_GT(mattered, 0u) << "kind " << kind;
  }
}

TEST(Lz4WindowReferencesTest, MalformedSequencesAreCorruption) {
  // A token announcing 5 literals with 2 present; a match offset of zero; a cut offset.
  for (std::vector<uint8_t> bad :
       {std::vector<uint8_t>{0x50, 'a', 'b'}, std::vector<uint8_t>{0x10, 'a', 0, 0, 0x00, 'z'},
        std::vector<uint8_t>{0x10, 'a', 7}}) {
    auto r = Lz4WindowReferences(bad, kBlock, "f.data");
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  }
  // A match 8 bytes before a 4-byte window.
  std::vector<uint8_t> far{0x00, 8, 0, 0x00};
  EXPECT_EQ(Lz4WindowReferences(far, 4, "f.data").status().code(), StatusCode::kCorruption);
  std::vector<uint8_t> near{0x00, 3, 0, 0x10, 'x'};  // 4 bytes from 3 back: window [1, 4)
  auto r = Lz4WindowReferences(near, 4, "f.data");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].begin, 1u);
  EXPECT_EQ((*r)[0].end, 4u);
}

TEST_P(Lz4BlocksTest, AFlippedByteIsCorruptionNamingTheBlock) {
  Lz4FrameLayout l = Walk();
  const Lz4Block& b = l.blocks[5];
  frame_[b.stored_offset + b.stored_size / 2] ^= 0x20;
  std::vector<uint8_t> out(content_.size());
  auto whole = DecodeLz4Frame(frame_, out, true, "f.data");
  ASSERT_FALSE(whole.ok());
  EXPECT_EQ(whole.status().code(), StatusCode::kCorruption);
  EXPECT_NE(whole.status().message().find("f.data: lz4 frame offset "), std::string::npos);
  Status alone = CheckLz4Block(l, b, Stored(b), "f.data");
  if (GetParam().block_checksums) {
    EXPECT_EQ(alone.code(), StatusCode::kCorruption);
    EXPECT_NE(alone.message().find("offset " + std::to_string(b.stored_offset - 4)),
              std::string::npos)
        << alone.ToString();
  } else {
    EXPECT_TRUE(alone.ok());  // nothing to check against: readers then read whole frames
  }
}

TEST_P(Lz4BlocksTest, TruncatedOrBadFramesAreCorruption) {
  for (size_t cut : {size_t{3}, size_t{10}, frame_.size() / 2, frame_.size() - 1}) {
    std::vector<uint8_t> part(frame_.begin(), frame_.begin() + static_cast<ptrdiff_t>(cut));
    auto l = WalkLz4Frame(MemoryRead(part), part.size(), content_.size(), "f.data");
    ASSERT_FALSE(l.ok()) << "cut at " << cut;
    EXPECT_EQ(l.status().code(), StatusCode::kCorruption) << l.status().ToString();
    EXPECT_NE(l.status().message().find("f.data: lz4 frame offset "), std::string::npos);
  }
  // A content size other than the frame's own.
  auto l = WalkLz4Frame(MemoryRead(frame_), frame_.size(), content_.size() + 1, "f.data");
  EXPECT_EQ(l.status().code(), StatusCode::kCorruption);
  // A block size beyond the block maximum.
  Lz4FrameLayout good = Walk();
  std::vector<uint8_t> bad = frame_;
  bad[good.blocks[3].stored_offset - 2] = 0x7f;
  l = WalkLz4Frame(MemoryRead(bad), bad.size(), content_.size(), "f.data");
  EXPECT_EQ(l.status().code(), StatusCode::kCorruption);
  // A decoded size other than the block's.
  const Lz4Block& b = good.blocks[0];
  std::vector<uint8_t> out(b.content_size - 1);
  Lz4Block shorter = b;
  shorter.content_size -= 1;
  EXPECT_EQ(DecodeLz4Block(shorter, Stored(b), {}, out, "f.data").code(), StatusCode::kCorruption);
}

INSTANTIATE_TEST_SUITE_P(Frames, LinkedLz4BlocksTest,
                         ::testing::Values(Param{true, true}, Param{true, false}),
                         [](const auto& p) {
                           return std::string("Linked") +
                                  (p.param.block_checksums ? "BlockSums" : "NoBlockSums");
                         });
INSTANTIATE_TEST_SUITE_P(Frames, Lz4BlocksTest,
                         ::testing::Values(Param{true, true}, Param{true, false},
                                           Param{false, true}, Param{false, false}),
                         [](const auto& p) {
                           return std::string(p.param.linked ? "Linked" : "Independent") +
                                  (p.param.block_checksums ? "BlockSums" : "NoBlockSums");
                         });

// A compressed stream file of one data frame split into `frames` lz4 frames as virtnbdbackup
// writes them (linked 64 KiB blocks), with its trailer; `content` is the whole disk.
std::string WriteLinkedFile(const testing::ScratchDir& dir, const std::vector<uint8_t>& content,
                            size_t frames, bool block_checksums) {
  StreamMetadata m;
  m.virtual_size = content.size();
  m.data_size = content.size();
  m.disk_name = "vda";
  m.checkpoint_name = "virtnbdbackup.0";
  m.date = "2026-11-26T00:00:00";
  m.compression_level = 2;
  std::vector<uint8_t> bytes;
  auto put = [&](std::span<const uint8_t> b) { bytes.insert(bytes.end(), b.begin(), b.end()); };
  auto text = [&](const std::string& s) {
    put(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  };
  const std::string json = EncodeMetadata(m);
  put(EncodeFrameHeader({FrameKind::kMeta, 0, json.size()}));
  text(json + "\r\n");
  put(EncodeFrameHeader({FrameKind::kData, 0, content.size()}));
  TrailerEntry e;
  e.split = frames > 1;
  const size_t per = content.size() / frames;
  for (size_t f = 0; f < frames; ++f) {
    const size_t len = f + 1 == frames ? content.size() - f * per : per;
    auto packed = Frame(std::span(content).subspan(f * per, len), true, block_checksums);
    put(packed);
    e.chunk_sizes.push_back(packed.size());
  }
  text("\r\n");
  put(EncodeFrameHeader({FrameKind::kStop, 0, 0}));
  const std::string trailer = EncodeTrailer({e});
  text(trailer + "\r\n");
  put(EncodeFrameHeader({FrameKind::kComp, 0, trailer.size()}));
  const std::string path = dir.File("vda.full.data");
  testing::WriteFileBytes(path, bytes);
  return path;
}

class LinkedReaderTest : public ::testing::TestWithParam<uint64_t> {};

// Random reads through caches too small to hold a frame: blocks come from restart points,
// raw blocks and cached neighbours, and must equal the content everywhere.
TEST_P(LinkedReaderTest, RandomReadsEqualTheContent) {
  testing::ScratchDir dir;
  const std::vector<uint8_t> content = MixedContent(3 * 40 * kBlock + 4096, 3);
  const std::string path = WriteLinkedFile(dir, content, 3, true);
  ReaderOptions o;
  o.cache_bytes = GetParam();
  auto r = StreamReader::Open(path, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ((*r)->index().chunks.size(), 3u);
  std::mt19937_64 rng(5);
  std::vector<uint8_t> buf;
  for (int i = 0; i < 400; ++i) {
    const uint64_t len = 1 + rng() % (i % 4 == 0 ? 300000 : 8192);
    const uint64_t off = rng() % (content.size() - len);
    buf.resize(len);
    Status s = (*r)->Read(off, buf);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(0, std::memcmp(buf.data(), content.data() + off, len)) << off << "+" << len;
  }
  buf.resize(content.size());
  ASSERT_TRUE((*r)->Read(0, buf).ok());
  EXPECT_EQ(buf, content);
}

// Text-like content, whose blocks need windows of every size (sparse ones and, past the sparse
// limit, compressed whole ones), read at random offsets by four threads at once through one
// reader: blocks of the same frames are decoded, learnt and evicted concurrently.
TEST_P(LinkedReaderTest, ConcurrentRandomReadsOfTextEqualTheContent) {
  testing::ScratchDir dir;
  const std::vector<uint8_t> content = WordyContent(4 * 24 * kBlock + 777, 11);
  const std::string path = WriteLinkedFile(dir, content, 4, true);
  ReaderOptions o;
  o.cache_bytes = GetParam();
  auto r = StreamReader::Open(path, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::vector<uint8_t> buf;
      for (int i = 0; i < 300; ++i) {
        const uint64_t len = 1 + rng() % (i % 5 == 0 ? 200000 : 4096);
        const uint64_t off = rng() % (content.size() - len);
        buf.resize(len);
        if (!(*r)->Read(off, buf).ok() || std::memcmp(buf.data(), content.data() + off, len)) {
          ++bad;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(CacheBytes, LinkedReaderTest,
                         ::testing::Values(uint64_t{0}, uint64_t{256} << 10, uint64_t{64} << 20));

TEST(LinkedReaderCorruptionTest, AFlippedByteFailsTheFrameNamingFileAndOffset) {
  testing::ScratchDir dir;
  const std::vector<uint8_t> content = MixedContent(2 * 30 * kBlock, 4);
  const std::string path = WriteLinkedFile(dir, content, 2, true);
  uint64_t victim_offset = 0;
  {
    auto r = StreamReader::Open(path);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const Chunk& c = (*r)->index().chunks[1];
    victim_offset = c.offset;
    auto bytes = testing::ReadFileBytes(path);
    bytes[testing::StoredByteUnder(path, c, 10 * kBlock + 5)] ^= 0x04;
    testing::WriteFileBytes(path, bytes);
  }
  auto r = StreamReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<uint8_t> buf(4096);
  // Any block of the damaged frame: its first read decodes the whole frame, checks it.
  for (int round = 0; round < 2; ++round) {
    Status s = (*r)->Read(victim_offset + 25 * kBlock, buf);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find(path + ": offset "), std::string::npos) << s.ToString();
  }
  ASSERT_TRUE((*r)->Read(5 * kBlock, buf).ok());  // the other frame reads
  EXPECT_EQ(0, std::memcmp(buf.data(), content.data() + 5 * kBlock, buf.size()));
}

// Decode-ahead (ReaderOptions::decode_ahead): a sequential reader's next frame is decoded on a
// background thread.
constexpr size_t kAheadFrames = 4;
constexpr size_t kAheadFrameBytes = 16 * kBlock;

std::unique_ptr<StreamReader> OpenAhead(const std::string& path,
                                        const std::shared_ptr<ChunkCache>& cache) {
  ReaderOptions o;
  o.cache = cache;
  o.decode_ahead = true;
  auto r = StreamReader::Open(path, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// Waits (bounded) until the cache holds `bytes`: a decode-ahead's blocks arrived.
bool CacheReaches(const ChunkCache& cache, uint64_t bytes) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (cache.bytes() < bytes) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(DecodeAheadReaderTest, ASequentialReadDecodesTheNextFrameAheadAndEqualsTheContent) {
  testing::ScratchDir dir;
  const std::vector<uint8_t> content = MixedContent(kAheadFrames * kAheadFrameBytes, 21);
  const std::string path = WriteLinkedFile(dir, content, kAheadFrames, true);
  auto cache = std::make_shared<ChunkCache>(64u << 20);
  auto r = OpenAhead(path, cache);
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->index().chunks.size(), kAheadFrames);
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE(r->Read(0, buf).ok());
  // The first read decodes frame 0 itself; frame 1 arrives from the background.
  EXPECT_TRUE(CacheReaches(*cache, 2 * kAheadFrameBytes)) << cache->bytes();
  // Then all of it, in the kernel's 128 KiB requests.
  std::vector<uint8_t> all(content.size());
  for (size_t off = 0; off < all.size(); off += 128 * 1024) {
    Status s =
        r->Read(off, std::span(all).subspan(off, std::min<size_t>(128 * 1024, all.size() - off)));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_EQ(all, content);
}

TEST(DecodeAheadReaderTest, ACorruptNextFrameFailsOnlyItsOwnReadsNamingIt) {
  testing::ScratchDir dir;
  const std::vector<uint8_t> content = MixedContent(kAheadFrames * kAheadFrameBytes, 22);
  const std::string path = WriteLinkedFile(dir, content, kAheadFrames, true);
  uint64_t victim = 0;
  {
    auto intact = StreamReader::Open(path);
    ASSERT_TRUE(intact.ok()) << intact.status().ToString();
    const Chunk& c = (*intact)->index().chunks[1];
    victim = c.offset;
    auto bytes = testing::ReadFileBytes(path);
    bytes[testing::StoredByteUnder(path, c, 3 * kBlock + 9)] ^= 0x20;
    testing::WriteFileBytes(path, bytes);
  }
  auto cache = std::make_shared<ChunkCache>(64u << 20);
  auto r = OpenAhead(path, cache);
  ASSERT_NE(r, nullptr);
  // All of frame 0, sequentially: the decode-ahead of frame 1 fails meanwhile.
  std::vector<uint8_t> frame0(kAheadFrameBytes);
  for (size_t off = 0; off < frame0.size(); off += 32 * 1024) {
    Status s = r->Read(off, std::span(frame0).subspan(off, 32 * 1024));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_EQ(0, std::memcmp(frame0.data(), content.data(), frame0.size()));
  std::vector<uint8_t> buf(4096);
  for (int round = 0; round < 2; ++round) {
    Status s = r->Read(victim + 7 * kBlock, buf);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find(path + ": offset "), std::string::npos) << s.ToString();
  }
  ASSERT_TRUE(r->Read(2 * kAheadFrameBytes + 5, buf).ok());  // the frame after it reads
  EXPECT_EQ(0, std::memcmp(buf.data(), content.data() + 2 * kAheadFrameBytes + 5, buf.size()));
}

TEST(DecodeAheadReaderTest, DestroyingTheReaderWaitsForItsDecodeAhead) {
  testing::ScratchDir dir;
  constexpr size_t kFrame = 128 * kBlock;  // 8 MiB: a decode that takes a while
  const std::vector<uint8_t> content = MixedContent(2 * kFrame, 23);
  const std::string path = WriteLinkedFile(dir, content, 2, true);
  auto cache = std::make_shared<ChunkCache>(64u << 20);
  for (int round = 0; round < 3; ++round) {
    auto r = OpenAhead(path, cache);
    ASSERT_NE(r, nullptr);
    std::vector<uint8_t> buf(4096);
    ASSERT_TRUE(r->Read(kFrame - 4096, buf).ok());  // queues frame 1
    r.reset();  // while frame 1 decodes (or before it starts): joins, frees nothing in use
  }
  // Nothing of the readers holds the cache any more (no thread outlived them).
  EXPECT_EQ(cache.use_count(), 1);
}

}  // namespace
}  // namespace backupfs
