// Block status and pipelined reads against a real qemu-nbd exporting a qcow2 image with a
// persistent dirty bitmap, checked byte for byte against `qemu-img convert -O raw`.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "capture/block_status.h"
#include "capture/extents.h"
#include "capture/nbd_copy.h"
#include "capture/nbd_source.h"
#include "capture/nbd_test_util.h"
#include "stream/reader.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::OnPath;
using testing::RunCommand;
using testing::Spawn;

CopyOptions Opts(uint64_t request_size, unsigned window) {
  CopyOptions o;
  o.request_size = request_size;
  o.window = window;
  return o;
}

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;
constexpr uint64_t kImageSize = 64 * MiB;
constexpr auto D = ExtentKind::kData;
constexpr auto Z = ExtentKind::kZero;
const std::string kBitmapContext = "qemu:dirty-bitmap:bitmap0";

// True once the server completes an NBD handshake (a bare connect() makes qemu-nbd complain).
bool Answers(const std::string& socket_path) {
  std::unique_ptr<nbd_handle, decltype(&nbd_close)> h(nbd_create(), &nbd_close);
  return h && nbd_connect_unix(h.get(), socket_path.c_str()) == 0;
}

std::string N(uint64_t n) { return std::to_string(n); }

NbdEndpoint Unix(const std::string& socket) {
  NbdEndpoint e;
  e.socket = socket;
  return e;
}

// The image, built once per test: the writes before `bitmap --add` are clean, those after it
// are dirty, and the discarded range was written before and is dirty (a trim).
class NbdCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"qemu-img", "qemu-io", "qemu-nbd"}) {
      if (!OnPath(p)) GTEST_SKIP() << p << " is not installed";
    }
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    ASSERT_NO_FATAL_FAILURE(MakeImage());
    ASSERT_TRUE(RunCommand({"qemu-img", "convert", "-f", "qcow2", "-O", "raw", image_, raw_path_}));
    raw_ = testing::ReadFileBytes(raw_path_);
    ASSERT_NO_FATAL_FAILURE(StartServer());
  }

  void TearDown() override {
    if (server_ > 0) {
      ::kill(server_, SIGTERM);
      ::waitpid(server_, nullptr, 0);
    }
  }

  void Io(const std::vector<std::string>& commands, bool unmap = false) {
    std::vector<std::string> args{"qemu-io", "-f", "qcow2"};
    if (unmap) args.insert(args.end(), {"-d", "unmap"});
    for (const std::string& c : commands) args.insert(args.end(), {"-c", c});
    args.push_back(image_);
    ASSERT_TRUE(RunCommand(args)) << commands.front();
  }

  void MakeImage() {
    testing::WriteFileBytes(dir_.File("rand1"), testing::RandomBytes(2 * MiB, 1));
    testing::WriteFileBytes(dir_.File("rand2"), testing::RandomBytes(256 * KiB, 2));
    ASSERT_TRUE(RunCommand({"qemu-img", "create", "-f", "qcow2", image_, N(kImageSize)}));
    Io({"write -P 0x5a 0 " + N(MiB),
        "write -s " + dir_.File("rand1") + " " + N(8 * MiB) + " " + N(2 * MiB),
        "write -P 0x22 " + N(20 * MiB) + " " + N(MiB)});
    ASSERT_TRUE(RunCommand({"qemu-img", "bitmap", "--add", image_, "bitmap0"}));
    Io({"write -s " + dir_.File("rand2") + " " + N(4 * MiB) + " " + N(256 * KiB),
        "write -P 0x33 " + N(9 * MiB) + " " + N(64 * KiB),
        "write -P 0x44 " + N(30 * MiB) + " " + N(64 * KiB)});
    Io({"discard " + N(20 * MiB) + " " + N(MiB)}, /*unmap=*/true);
  }

  // Waits for the socket to accept connections, not for a fixed time.
  void StartServer() {
    server_ = Spawn({"qemu-nbd", "--socket=" + socket_, "--format=qcow2", "--read-only",
                     "--bitmap=bitmap0", "--persistent", "--shared=8", image_});
    ASSERT_GT(server_, 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!Answers(socket_)) {
      ASSERT_EQ(::waitpid(server_, nullptr, WNOHANG), 0) << "qemu-nbd exited";
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "qemu-nbd never listened";
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  NbdSource Connect(bool dirty = true) {
    NbdConnectOptions o{Unix(socket_), "", true, dirty ? kBitmapContext : ""};
    Result<NbdSource> s = NbdSource::Connect(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(s).value();
  }

  // Copies `frames` into a stream file and reads the whole disk back through StreamReader.
  std::vector<uint8_t> CopyAndReadBack(const ExtentList& frames, const WriterOptions& wopt,
                                       const CopyOptions& copt) {
    NbdSource source = Connect();
    StreamMetadata meta;
    meta.virtual_size = source.size();
    meta.data_size = DataBytes(frames);
    meta.disk_name = "vda";
    meta.disk_format = "qcow2";
    const std::string path = dir_.File("vda.full.data");
    auto writer = StreamWriter::Create(path, meta, wopt);
    EXPECT_TRUE(writer.ok()) << writer.status().ToString();
    Status s = CopyToStream(source, frames, **writer, copt);
    EXPECT_TRUE(s.ok()) << s.ToString();
    s = (*writer)->Finish();
    EXPECT_TRUE(s.ok()) << s.ToString();
    auto reader = StreamReader::Open(path);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    std::vector<uint8_t> disk(source.size());
    s = (*reader)->Read(0, disk);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return disk;
  }

  std::vector<uint8_t> RawRange(uint64_t offset, uint64_t length) const {
    return {raw_.begin() + offset, raw_.begin() + offset + length};
  }

  testing::ScratchDir dir_;
  const std::string image_ = dir_.File("disk.qcow2");
  const std::string raw_path_ = dir_.File("disk.raw");
  const std::string socket_ = dir_.File("nbd.sock");
  std::vector<uint8_t> raw_;
  pid_t server_ = -1;
};

const ExtentList kFullFrames{
    {0, MiB, D},
    {MiB, 3 * MiB, Z},
    {4 * MiB, 256 * KiB, D},
    {4 * MiB + 256 * KiB, 4 * MiB - 256 * KiB, Z},
    {8 * MiB, 2 * MiB, D},
    {10 * MiB, 20 * MiB, Z},
    {30 * MiB, 64 * KiB, D},
    {30 * MiB + 64 * KiB, 34 * MiB - 64 * KiB, Z},
};
const RangeList kDirty{
    {4 * MiB, 256 * KiB}, {9 * MiB, 64 * KiB}, {20 * MiB, MiB}, {30 * MiB, 64 * KiB}};
const ExtentList kIncFrames{
    {4 * MiB, 256 * KiB, D},
    {9 * MiB, 64 * KiB, D},
    {20 * MiB, MiB, Z},  // written before the bitmap, discarded after: zeros
    {30 * MiB, 64 * KiB, D},
};

TEST_F(NbdCopyTest, SourceReportsSizeAndLimits) {
  NbdSource source = Connect();
  EXPECT_EQ(source.size(), kImageSize);
  EXPECT_GT(source.max_block(), 0u);
  EXPECT_LE(source.max_block(), kDefaultNbdMaxBlock);
}

// The park keeps every connection of a source that goes away, a failed negotiation's too:
// only CloseAll() closes them (after the backup job has ended; see NbdHandlePark).
TEST_F(NbdCopyTest, ParkedSourcesHandTheirConnectionOverOnEveryPath) {
  NbdHandlePark park;
  {
    Result<NbdSource> ok = NbdSource::Connect({Unix(socket_), "", true, kBitmapContext, &park});
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
    EXPECT_EQ(park.size(), 0u);
  }
  EXPECT_EQ(park.size(), 1u);
  Result<NbdSource> bad =
      NbdSource::Connect({Unix(socket_), "", true, "qemu:dirty-bitmap:nosuch", &park});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(park.size(), 2u);
  park.CloseAll();
  EXPECT_EQ(park.size(), 0u);
}

TEST_F(NbdCopyTest, MissingBitmapIsNotFound) {
  Result<NbdSource> s = NbdSource::Connect({Unix(socket_), "", true, "qemu:dirty-bitmap:nope"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_NE(s.status().message().find(socket_), std::string::npos) << s.status().ToString();
}

TEST_F(NbdCopyTest, BlockStatusGivesAllocationAndDirtyRanges) {
  NbdSource source = Connect();
  for (uint64_t request : {kBlockStatusRequest, MiB, 3 * MiB + 512}) {
    Result<BlockStatusMaps> maps = QueryBlockStatus(source, request);
    ASSERT_TRUE(maps.ok()) << maps.status().ToString();
    EXPECT_EQ(FullFrames(maps->allocation), kFullFrames) << "request " << request;
    EXPECT_EQ(maps->dirty, kDirty) << "request " << request;
    EXPECT_EQ(IncrementalFrames(maps->dirty, maps->allocation), kIncFrames);
    EXPECT_EQ(maps->allocation.back().end(), kImageSize);
  }
}

TEST_F(NbdCopyTest, FullCopyReadsBackAsTheRawImage) {
  EXPECT_TRUE(CopyAndReadBack(kFullFrames, {}, {}) == raw_);
}

TEST_F(NbdCopyTest, CompressedFullCopyWithSmallRequestsReadsBackAsTheRawImage) {
  WriterOptions w;
  w.lz4_level = 1;
  EXPECT_TRUE(CopyAndReadBack(kFullFrames, w, Opts(96 * KiB, 3)) == raw_);
}

// Reads spread over three connections and a buffer that wraps at odd places still arrive in
// order, each connection parked with the source's.
TEST_F(NbdCopyTest, MultiConnectionCopyWithASmallBufferReadsBackAsTheRawImage) {
  CopyOptions o = Opts(64 * KiB, 8);
  o.connections = 3;
  o.buffer_bytes = 100 * KiB;
  EXPECT_TRUE(CopyAndReadBack(kFullFrames, {}, o) == raw_);
  NbdHandlePark park;
  {
    Result<NbdSource> source = NbdSource::Connect({Unix(socket_), "", true, "", &park});
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    ASSERT_TRUE(source->can_multi_conn());
    uint64_t next = 0;
    Status s = ReadExtents(*source, kFullFrames, o, [&](uint64_t off, std::span<const uint8_t> b) {
      EXPECT_GE(off, next);
      next = off + b.size();
      EXPECT_TRUE(std::equal(b.begin(), b.end(), raw_.begin() + off)) << off;
      return Status::Ok();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(park.size(), 2u);  // the extra connections, once the copy is done
  }
  EXPECT_EQ(park.size(), 3u);
}

TEST_F(NbdCopyTest, IncCopyHasDirtyDataAndZeroFrames) {
  std::vector<uint8_t> disk = CopyAndReadBack(kIncFrames, {}, {});
  for (const Extent& e : kIncFrames) {
    std::vector<uint8_t> got(disk.begin() + e.offset, disk.begin() + e.end());
    std::vector<uint8_t> want =
        e.kind == D ? RawRange(e.offset, e.length) : std::vector<uint8_t>(e.length, 0);
    EXPECT_TRUE(got == want) << "frame at " << e.offset;
  }
  // The discarded range held 0x22 before the bitmap: the inc must zero it, not keep it.
  EXPECT_EQ(disk[20 * MiB], 0);
}

TEST_F(NbdCopyTest, ScatteredSmallExtentsArriveInOrder) {
  ExtentList frames;
  for (uint64_t off = 0; off + 4 * KiB <= 32 * MiB; off += 16 * KiB) {
    frames.push_back({off + 512, 4 * KiB - 512, D});
  }
  NbdSource source = Connect(false);
  uint64_t next = 0, count = 0;
  Status s = ReadExtents(
      source, frames, Opts(1 * KiB, 16), [&](uint64_t offset, std::span<const uint8_t> bytes) {
        EXPECT_GE(offset, next);
        EXPECT_LE(bytes.size(), KiB);
        EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), raw_.begin() + offset));
        next = offset + bytes.size();
        ++count;
        return Status::Ok();
      });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(count, frames.size() * 4);  // 3584 bytes in pieces of at most 1 KiB
}

TEST_F(NbdCopyTest, ConsumerErrorStopsTheCopyAndLeavesTheSourceUsable) {
  NbdSource source = Connect(false);
  int calls = 0;
  auto failing = [&](uint64_t, std::span<const uint8_t>) {
    return ++calls == 3 ? Status::IOError("disk full") : Status::Ok();
  };
  Status s = ReadExtents(source, kFullFrames, Opts(64 * KiB, 8), failing);
  EXPECT_EQ(s.message(), "disk full");
  EXPECT_EQ(calls, 3);
  // Every read of the failed copy was drained: the handle serves the next copy.
  uint64_t bytes = 0;
  s = ReadExtents(source, kFullFrames, {}, [&](uint64_t, std::span<const uint8_t> b) {
    bytes += b.size();
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(bytes, DataBytes(kFullFrames));
}

TEST_F(NbdCopyTest, ExtentsPastTheExportAreRejected) {
  NbdSource source = Connect(false);
  ExtentList frames{{kImageSize - 512, 1024, D}};
  Status s = ReadExtents(source, frames, {},
                         [](uint64_t, std::span<const uint8_t>) { return Status::Ok(); });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
}

TEST_F(NbdCopyTest, CancelStopsTheCopyBeforeTheNextDelivery) {
  NbdSource source = Connect(false);
  CopyOptions o = Opts(64 * KiB, 8);
  int delivered = 0;
  o.cancelled = [&delivered] { return delivered >= 2; };
  o.delivered = [&delivered](uint64_t) { ++delivered; };
  Status s = ReadExtents(source, kFullFrames, o,
                         [](uint64_t, std::span<const uint8_t>) { return Status::Ok(); });
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.ToString();
  EXPECT_EQ(delivered, 2);
}

}  // namespace
}  // namespace backupfs
