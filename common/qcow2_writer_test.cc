// Qcow2Writer against QEMU itself: every image it writes must pass `qemu-img check` and read
// back, through QEMU's qcow2 driver, exactly as the raw oracle written beside it.
#include "common/qcow2_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <thread>

#include "common/subprocess.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

using testing::ScratchDir;

bool HaveQemuImg() { return RunCapture({"qemu-img", "--version"}).ok(); }

class Qcow2WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveQemuImg()) GTEST_SKIP() << "qemu-img is not installed";
  }
  // Writes `clusters` (virtual cluster indexes) of random data in a shuffled order from
  // four threads, mirrored into a raw oracle; returns the finished image's path.
  std::string WriteImage(uint64_t size, const Qcow2Layout& layout, std::vector<uint64_t> clusters) {
    const std::string path = dir_.File("img.qcow2");
    auto w = Qcow2Writer::Create(path, size, layout);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    const uint64_t cs = 1ull << layout.cluster_bits;
    oracle_.assign(size, 0);
    std::shuffle(clusters.begin(), clusters.end(), std::mt19937_64(7));
    std::vector<std::thread> threads;
    for (unsigned lane = 0; lane < 4; ++lane) {
      threads.emplace_back([&, lane] {
        for (size_t i = lane; i < clusters.size(); i += 4) {
          const uint64_t off = clusters[i] * cs, n = std::min(cs, size - off);
          std::vector<uint8_t> b = testing::RandomBytes(n, clusters[i] + 1);
          std::copy(b.begin(), b.end(), oracle_.begin() + static_cast<std::ptrdiff_t>(off));
          Status s = (*w)->Write(lane, off, b);
          EXPECT_TRUE(s.ok()) << s.ToString();
        }
      });
    }
    for (auto& t : threads) t.join();
    Status s = (*w)->Finish();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return path;
  }
  void ExpectQemuAgrees(const std::string& image) {
    auto check = RunCapture({"qemu-img", "check", "-f", "qcow2", image});
    EXPECT_TRUE(check.ok()) << check.status().ToString();
    const std::string raw = dir_.File("oracle.raw");
    testing::WriteFileBytes(raw, oracle_);
    auto cmp = RunCapture({"qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, raw});
    EXPECT_TRUE(cmp.ok()) << cmp.status().ToString();
  }

  ScratchDir dir_;
  std::vector<uint8_t> oracle_;
};

TEST_F(Qcow2WriterTest, ClustersInAnyOrderReadBackThroughQemu) {
  const uint64_t size = 40 * 65536 + 12288;  // the last cluster ends inside the image
  std::vector<uint64_t> clusters;
  for (uint64_t c = 0; c <= size / 65536; c += 1 + c % 3) clusters.push_back(c);
  clusters.push_back(size / 65536 - 1);
  std::sort(clusters.begin(), clusters.end());
  clusters.erase(std::unique(clusters.begin(), clusters.end()), clusters.end());
  ExpectQemuAgrees(WriteImage(size, {}, clusters));
  EXPECT_EQ(access(dir_.File("img.qcow2.partial").c_str(), F_OK), -1);
}

TEST_F(Qcow2WriterTest, OtherClusterSizesAndLazyRefcounts) {
  for (uint32_t bits : {9u, 12u, 21u}) {
    SCOPED_TRACE(bits);
    const uint64_t cs = 1ull << bits, size = 70 * cs;
    std::vector<uint64_t> clusters = {0, 1, 5, 33, 69};
    std::string img = WriteImage(size, {bits, bits == 12}, clusters);
    ExpectQemuAgrees(img);
    auto info = RunCapture({"qemu-img", "info", img});
    ASSERT_TRUE(info.ok());
    EXPECT_NE(info->find("cluster_size: " + std::to_string(cs)), std::string::npos) << *info;
    EXPECT_NE(info->find(std::string("lazy refcounts: ") + (bits == 12 ? "true" : "false")),
              std::string::npos);
    ASSERT_EQ(unlink(img.c_str()), 0);
  }
}

TEST_F(Qcow2WriterTest, LargeSparseDiskNeedsManyL2TablesAndRefcountBlocks) {
  // 4 KiB clusters: an L2 table maps 2 MiB and a refcount block counts 2048 clusters, so a
  // 2 GiB disk with 3000 scattered clusters needs many of both.
  const uint64_t size = 2ull << 30, cs = 4096;
  std::vector<uint64_t> clusters;
  for (uint64_t i = 0; i < 3000; ++i) clusters.push_back(i * (size / cs / 3000));
  const std::string img = WriteImage(size, {12, false}, clusters);
  auto check = RunCapture({"qemu-img", "check", "-f", "qcow2", img});
  EXPECT_TRUE(check.ok()) << check.status().ToString();
  auto map = RunCapture({"qemu-img", "map", "--output=json", "-f", "qcow2", img});
  ASSERT_TRUE(map.ok());
  size_t data = 0;
  for (size_t at = 0; (at = map->find("\"data\": true", at)) != std::string::npos; ++at) ++data;
  EXPECT_EQ(data, 3000u) << "each written cluster is data, nothing else is";
}

TEST_F(Qcow2WriterTest, RefusesWritesThatAreNotWholeClustersOrTwice) {
  auto w = Qcow2Writer::Create(dir_.File("bad.qcow2"), 1 << 20, {});
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> b(65536, 1);
  EXPECT_FALSE((*w)->Write(0, 512, b).ok());
  EXPECT_FALSE((*w)->Write(0, 0, std::span(b).first(1000)).ok());
  EXPECT_TRUE((*w)->Write(0, 65536, b).ok());
  Status twice = (*w)->Write(1, 65536, b);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.message().find("written twice"), std::string::npos);
  w->reset();  // unfinished: nothing is left
  EXPECT_EQ(access(dir_.File("bad.qcow2.partial").c_str(), F_OK), -1);
  EXPECT_EQ(access(dir_.File("bad.qcow2").c_str(), F_OK), -1);
}

TEST(Qcow2WriterFitsTest, OnlyTheSubsetItWrites) {
  Qcow2Layout l;
  ASSERT_TRUE(Qcow2WriterFits({"cluster_size=131072", "compat=1.1", "compression_type=zlib",
                               "refcount_bits=16", "lazy_refcounts=on"},
                              &l));
  EXPECT_EQ(l.cluster_bits, 17u);
  EXPECT_TRUE(l.lazy_refcounts);
  ASSERT_TRUE(Qcow2WriterFits({}, &l));
  EXPECT_EQ(l.cluster_bits, 16u);
  for (const char* o :
       {"compat=0.10", "refcount_bits=64", "extended_l2=on", "compression_type=zstd",
        "cluster_size=3000", "cluster_size=4194304", "data_file=/x"}) {
    EXPECT_FALSE(Qcow2WriterFits({o}, &l)) << o;
  }
}

}  // namespace
}  // namespace backupfs
