// ProbeDisk and DescribeLayout against images built with the real tools (sfdisk, mkfs.ext4,
// mkntfs), checked against what blkid -p and partx report on the same image, plus hostile
// tables written byte by byte.
#include "guest/partitions.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "guest/test_support.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;
using guest_test::RunTool;
using guest_test::RunToolOutput;
using guest_test::ScratchDir;
constexpr uint64_t kMiB = 1024 * 1024;

// An image file (sparse, often larger than memory needs to hold) as the disk "vda", the name
// the messages are checked for: the stream layer's FileSource, named by a slice over all of it.
SliceSource OpenDisk(const std::string& path) {
  Result<FileSource> file = FileSource::Open(path);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  std::shared_ptr<const ByteSource> base =
      file.ok()
          ? std::shared_ptr<const ByteSource>(std::make_shared<FileSource>(std::move(file).value()))
          : std::make_shared<BufferSource>(std::vector<uint8_t>(), path);
  const uint64_t size = base->size();
  return SliceSource(std::move(base), 0, size, "vda");
}

class PartitionsTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.File(name); }
  std::string Sparse(const std::string& name, uint64_t size) const {
    std::string path = Path(name);
    std::ofstream(path).close();
    fs::resize_file(path, size);
    return path;
  }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(Path(name)) << text;
    return Path(name);
  }
  // Copies file `from` into `image` at byte `offset`.
  static void CopyIn(const std::string& from, const std::string& image, uint64_t offset) {
    std::ifstream in(from, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fstream out(image, std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(static_cast<std::streamoff>(offset));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  static void Patch(const std::string& image, uint64_t offset, const std::vector<uint8_t>& b) {
    std::fstream out(image, std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(static_cast<std::streamoff>(offset));
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }

  ScratchDir dir_;
};

// KEY="value" pairs of one line of blkid -o export / partx -P.
std::map<std::string, std::string> Pairs(const std::string& line) {
  std::map<std::string, std::string> pairs;
  std::istringstream in(line);
  std::string token;
  while (in >> token) {
    size_t eq = token.find('=');
    if (eq == std::string::npos) continue;
    std::string value = token.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '"') value = value.substr(1, value.size() - 2);
    pairs[token.substr(0, eq)] = value;
  }
  return pairs;
}

std::vector<std::map<std::string, std::string>> PartxRows(const std::string& image) {
  std::vector<std::map<std::string, std::string>> rows;
  std::istringstream in(
      RunToolOutput({"partx", "-o", "NR,START,SECTORS,TYPE,NAME,UUID", "-P", image}));
  for (std::string line; std::getline(in, line);) rows.push_back(Pairs(line));
  return rows;
}

// blkid -p on a region of the image: its TYPE, LABEL, UUID.
std::map<std::string, std::string> BlkidAt(const std::string& image, const Partition& p) {
  std::map<std::string, std::string> values;
  std::istringstream in(
      RunToolOutput({"sh", "-c",
                     "blkid -p -o export --offset " + std::to_string(p.offset) + " --size " +
                         std::to_string(p.size) + " " + image + " || true"}));
  for (std::string line; std::getline(in, line);) {
    auto kv = Pairs(line);
    values.insert(kv.begin(), kv.end());
  }
  return values;
}

void ExpectMatchesRealTools(const std::string& image, const DiskLayout& layout) {
  auto rows = PartxRows(image);
  ASSERT_EQ(layout.partitions.size(), rows.size()) << DescribeLayout(layout);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Partition& p = layout.partitions[i];
    SCOPED_TRACE("partition " + rows[i]["NR"]);
    EXPECT_EQ(std::to_string(p.number), rows[i]["NR"]);
    EXPECT_EQ(std::to_string(p.offset / 512), rows[i]["START"]);
    EXPECT_EQ(std::to_string(p.size / 512), rows[i]["SECTORS"]);
    EXPECT_EQ(p.entry_type, rows[i]["TYPE"]);
    EXPECT_EQ(p.entry_name, rows[i]["NAME"]);
    EXPECT_EQ(p.entry_uuid, rows[i]["UUID"]);
    if (p.container) continue;
    auto blkid = BlkidAt(image, p);
    EXPECT_EQ(p.type, blkid["TYPE"]);
    EXPECT_EQ(p.label, blkid["LABEL"]);
    EXPECT_EQ(p.uuid, blkid["UUID"]);
  }
}

TEST_F(PartitionsTest, GptWithExt4NtfsAndEmptyMatchesBlkidAndPartx) {
  std::string image = Sparse("gpt.img", 64 * kMiB);
  Write("gpt.sfdisk",
        "label: gpt\n"
        "size=16MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\n"
        "size=16MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"data\"\n"
        "size=8MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"spare\"\n");
  EXPECT_EQ(RunTool({"sfdisk", "-q", image}, Path("gpt.sfdisk")), 0);
  std::string ext4 = Sparse("ext4.img", 16 * kMiB);
  EXPECT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-L", "root", ext4}), 0);
  CopyIn(ext4, image, 1 * kMiB);
  std::string ntfs = Sparse("ntfs.img", 16 * kMiB);
  EXPECT_EQ(RunTool({"mkntfs", "-F", "-f", "-q", "-L", "data", ntfs}), 0);
  CopyIn(ntfs, image, 17 * kMiB);

  const SliceSource disk = OpenDisk(image);
  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->table, "gpt");
  EXPECT_TRUE(layout->problems.empty()) << layout->problems.front();
  ASSERT_EQ(layout->partitions.size(), 3u);
  EXPECT_EQ(layout->partitions[0].type, "ext4");
  EXPECT_EQ(layout->partitions[0].label, "root");
  EXPECT_EQ(layout->partitions[1].type, "ntfs");
  EXPECT_EQ(layout->partitions[1].label, "data");
  EXPECT_EQ(layout->partitions[2].type, "");
  EXPECT_EQ(layout->partitions[2].entry_name, "spare");
  ExpectMatchesRealTools(image, *layout);
  EXPECT_EQ(layout->table_uuid,
            Pairs(RunToolOutput({"blkid", "-p", "-o", "export", image}))["PTUUID"]);
}

TEST_F(PartitionsTest, MbrLogicalPartitionsInsideTheExtendedOne) {
  std::string image = Sparse("mbr.img", 64 * kMiB);
  Write("mbr.sfdisk",
        "label: dos\n"
        "size=8MiB, type=83\n"
        "size=8MiB, type=c\n"
        "type=5\n"
        "size=8MiB, type=83\n"
        "size=8MiB, type=82\n"
        "size=8MiB, type=83\n");
  EXPECT_EQ(RunTool({"sfdisk", "-q", image}, Path("mbr.sfdisk")), 0);
  std::string ext4 = Sparse("ext4.img", 8 * kMiB);
  EXPECT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-L", "logical6", ext4}), 0);

  const SliceSource disk = OpenDisk(image);
  Result<DiskLayout> first = ProbeDisk(disk);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->partitions.size(), 6u) << DescribeLayout(*first);
  CopyIn(ext4, image, first->partitions[4].offset);

  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->table, "dos");
  EXPECT_TRUE(layout->problems.empty()) << layout->problems.front();
  std::vector<int> numbers;
  for (const Partition& p : layout->partitions) numbers.push_back(p.number);
  EXPECT_EQ(numbers, (std::vector<int>{1, 2, 3, 5, 6, 7}));
  EXPECT_TRUE(layout->partitions[2].container);
  EXPECT_EQ(layout->partitions[2].entry_type, "0x5");
  EXPECT_EQ(layout->partitions[1].entry_type, "0xc");
  EXPECT_EQ(layout->partitions[4].entry_type, "0x82");
  EXPECT_EQ(layout->partitions[4].type, "ext4");
  EXPECT_EQ(layout->partitions[4].label, "logical6");
  ExpectMatchesRealTools(image, *layout);
}

TEST_F(PartitionsTest, UnpartitionedExt4IsTheWholeDisk) {
  std::string image = Sparse("whole.img", 8 * kMiB);
  EXPECT_EQ(RunTool({"mkfs.ext4", "-q", "-F", "-L", "whole", "-U",
                     "5b4f5b1c-2a4e-4a4e-9a0e-6c1d2f3a4b5c", image}),
            0);
  const SliceSource disk = OpenDisk(image);
  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->table, "");
  EXPECT_TRUE(layout->problems.empty());
  EXPECT_EQ(DescribeLayout(*layout),
            "disk: START=0 SIZE=8388608 TYPE=\"ext4\" LABEL=\"whole\" "
            "UUID=\"5b4f5b1c-2a4e-4a4e-9a0e-6c1d2f3a4b5c\" VERSION=\"1.0\"\n");
}

TEST_F(PartitionsTest, NoTableNoFilesystemIsAnEmptyWholeDisk) {
  BufferSource disk(std::vector<uint8_t>(4 * kMiB), "vdb");
  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(DescribeLayout(*layout), "disk: START=0 SIZE=4194304\n");
  EXPECT_TRUE(layout->problems.empty());
}

// An MBR with the given (type, first sector, sectors) primary entries.
std::vector<uint8_t> Mbr(const std::vector<std::array<uint32_t, 3>>& entries, size_t disk_size) {
  std::vector<uint8_t> disk(disk_size);
  for (size_t i = 0; i < entries.size(); ++i) {
    uint8_t* e = &disk[446 + 16 * i];
    e[4] = static_cast<uint8_t>(entries[i][0]);
    std::memcpy(e + 8, &entries[i][1], 4);
    std::memcpy(e + 12, &entries[i][2], 4);
  }
  disk[510] = 0x55;
  disk[511] = 0xAA;
  return disk;
}

TEST_F(PartitionsTest, OverlappingPartitionsAreShownAndNamed) {
  BufferSource disk(Mbr({{0x83, 2048, 8192}, {0x83, 4096, 8192}}, 8 * kMiB), "vdc");
  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->partitions.size(), 2u);
  ASSERT_EQ(layout->problems.size(), 1u);
  EXPECT_EQ(layout->problems[0],
            "vdc: partition 1 (bytes 1048576 to 5242880) overlaps partition 2 (bytes 2097152 to "
            "6291456)");
}

TEST_F(PartitionsTest, PartitionPastTheEndIsNotShown) {
  BufferSource disk(Mbr({{0x83, 2048, 4096}, {0x83, 8192, 100000}}, 8 * kMiB), "vdd");
  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  ASSERT_EQ(layout->partitions.size(), 1u);
  EXPECT_EQ(layout->partitions[0].number, 1);
  ASSERT_EQ(layout->problems.size(), 1u);
  EXPECT_EQ(layout->problems[0],
            "vdd: partition 2 (bytes 4194304 to 55394304) ends past the disk's end (8388608 "
            "bytes); not shown");
}

uint32_t Crc32(const uint8_t* p, size_t n) {
  uint32_t crc = 0xFFFFFFFF;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320 & (0 - (crc & 1)));
  }
  return ~crc;
}

template <typename T>
void Put(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(&b[at], &v, sizeof v);
}

// A GPT whose header claims 10,000 entries, 300 of them in use (one sector each).
std::vector<uint8_t> GptWithManyEntries() {
  constexpr uint64_t kSectors = 8192;
  constexpr uint32_t kEntries = 10000, kUsed = 300;
  constexpr uint64_t kFirstUsable = 2 + kEntries * 128 / 512;
  std::vector<uint8_t> disk = Mbr({{0xEE, 1, kSectors - 1}}, kSectors * 512);
  for (uint32_t i = 0; i < kUsed; ++i) {
    size_t e = 1024 + 128 * i;
    disk[e] = 0xAF;  // any non-zero type GUID
    disk[e + 16] = static_cast<uint8_t>(i + 1);
    Put<uint64_t>(disk, e + 32, kFirstUsable + i);
    Put<uint64_t>(disk, e + 40, kFirstUsable + i);
  }
  std::memcpy(&disk[512], "EFI PART", 8);
  Put<uint32_t>(disk, 512 + 8, 0x00010000);
  Put<uint32_t>(disk, 512 + 12, 92);
  Put<uint64_t>(disk, 512 + 24, 1);
  Put<uint64_t>(disk, 512 + 32, kSectors - 1);
  Put<uint64_t>(disk, 512 + 40, kFirstUsable);
  Put<uint64_t>(disk, 512 + 48, kSectors - 2);
  disk[512 + 56] = 0x42;  // disk GUID
  Put<uint64_t>(disk, 512 + 72, 2);
  Put<uint32_t>(disk, 512 + 80, kEntries);
  Put<uint32_t>(disk, 512 + 84, 128);
  Put<uint32_t>(disk, 512 + 88, Crc32(&disk[1024], kEntries * 128));
  Put<uint32_t>(disk, 512 + 16, Crc32(&disk[512], 92));
  return disk;
}

TEST_F(PartitionsTest, GptClaimingTenThousandEntriesShowsTheFirstOnes) {
  BufferSource disk(GptWithManyEntries(), "vde");
  auto start = std::chrono::steady_clock::now();
  Result<DiskLayout> layout = ProbeDisk(disk);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_LT(seconds, 10.0);
  EXPECT_EQ(layout->table, "gpt");
  ASSERT_EQ(layout->partitions.size(), kMaxPartitions);
  EXPECT_EQ(layout->partitions[0].number, 1);
  EXPECT_EQ(layout->partitions[0].offset, 2502u * 512);
  ASSERT_EQ(layout->problems.size(), 1u);
  EXPECT_EQ(layout->problems[0],
            "vde: its gpt table lists 300 partitions; only the first 256 are shown");
}

// A BSD disklabel in MBR slice 1 (type 0xa5): blkid lists its partitions as 5 and 6, inside
// partition 1, which is how nested tables work, not an overlap.
TEST_F(PartitionsTest, NestedBsdLabelIsNotAnOverlap) {
  std::vector<uint8_t> bytes = Mbr({{0xa5, 2048, 8192}}, 8 * kMiB);
  const size_t label = 2048 * 512 + 512;
  Put<uint32_t>(bytes, label, 0x82564557);
  Put<uint32_t>(bytes, label + 40, 512);
  Put<uint32_t>(bytes, label + 132, 0x82564557);
  Put<uint16_t>(bytes, label + 138, 2);
  for (uint32_t i = 0; i < 2; ++i) {
    Put<uint32_t>(bytes, label + 148 + 16 * i, 4000);                  // sectors
    Put<uint32_t>(bytes, label + 152 + 16 * i, 2048 + 16 + 4000 * i);  // absolute start
    bytes[label + 160 + 16 * i] = 7;                                   // 4.2BSD
  }
  std::string image = Sparse("bsd.img", 8 * kMiB);
  Patch(image, 0, bytes);

  BufferSource disk(std::move(bytes), "vdf");
  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_TRUE(layout->problems.empty()) << layout->problems.front();
  ExpectMatchesRealTools(image, *layout);
  ASSERT_EQ(layout->partitions.size(), 3u);
  EXPECT_EQ(layout->partitions[2].number, 6);
  EXPECT_EQ(layout->partitions[2].offset, (2048 + 16 + 4000) * 512u);
}

// libblkid itself allocates and reads a GPT entry array of up to 4 GiB (blkid -p on this
// image: 2 GB resident, 54 s). The primary header is not shown to it; the backup one is used.
TEST_F(PartitionsTest, GptHeaderClaimingAHugeEntryArrayIsIgnored) {
  std::string image = Sparse("big.img", 64ull << 30);
  Write("big.sfdisk",
        "label: gpt\n"
        "size=1GiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"one\"\n");
  EXPECT_EQ(RunTool({"sfdisk", "-q", image}, Path("big.sfdisk")), 0);
  std::ifstream in(image, std::ios::binary);
  std::vector<uint8_t> header(92);
  in.seekg(512);
  in.read(reinterpret_cast<char*>(header.data()), 92);
  Put<uint32_t>(header, 80, 30000000);
  Put<uint32_t>(header, 16, 0);
  Put<uint32_t>(header, 16, Crc32(header.data(), 92));
  Patch(image, 512, header);

  const SliceSource disk = OpenDisk(image);
  auto start = std::chrono::steady_clock::now();
  Result<DiskLayout> layout = ProbeDisk(disk);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_LT(seconds, 10.0);
  EXPECT_EQ(layout->table, "gpt");
  ASSERT_EQ(layout->partitions.size(), 1u);
  EXPECT_EQ(layout->partitions[0].entry_name, "one");
  EXPECT_EQ(layout->partitions[0].size, 1ull << 30);
  ASSERT_EQ(layout->problems.size(), 1u);
  EXPECT_EQ(layout->problems[0],
            "vda: the GPT header at byte 512 claims 30000000 entries of 128 bytes (3840000000 "
            "bytes, more than 4194304); ignored");
}

// blkid finds NTFS by its $MFT and its label in $Volume, wherever the boot sector says the MFT
// is: here 8 MiB in, past the first and last MiB of the disk that are always copied.
TEST_F(PartitionsTest, NtfsWithItsMftFarFromTheStartIsFound) {
  std::string image = Sparse("ntfs.img", 16 * kMiB);
  EXPECT_EQ(RunTool({"mkntfs", "-F", "-f", "-q", "-L", "far", image}), 0);
  std::ifstream in(image, std::ios::binary);
  std::vector<uint8_t> boot(512), mft(4096);
  in.read(reinterpret_cast<char*>(boot.data()), 512);
  uint64_t mft_lcn = 0;
  std::memcpy(&mft_lcn, &boot[48], 8);
  ASSERT_EQ(mft_lcn, 4u);  // 4 KiB clusters: the MFT at 16 KiB
  in.seekg(16 * 1024);
  in.read(reinterpret_cast<char*>(mft.data()), 4096);
  Patch(image, 8 * kMiB, mft);
  Patch(image, 16 * 1024, std::vector<uint8_t>(4096));
  Patch(image, 48, {0x00, 0x08, 0, 0, 0, 0, 0, 0});  // cluster 2048: 8 MiB
  auto truth =
      Pairs(RunToolOutput({"sh", "-c", "blkid -p -o export " + image + " | tr '\\n' ' '"}));
  ASSERT_EQ(truth["LABEL"], "far");

  const SliceSource disk = OpenDisk(image);
  Result<DiskLayout> layout = ProbeDisk(disk);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  ASSERT_EQ(layout->partitions.size(), 1u);
  EXPECT_EQ(layout->partitions[0].type, "ntfs");
  EXPECT_EQ(layout->partitions[0].label, "far");
  EXPECT_EQ(layout->partitions[0].uuid, truth["UUID"]);
}

// Labels blkid finds in the root directory, past the first MiB on a 2 GiB volume: FAT32 (its
// FATs come first) and exFAT (the cluster heap starts at 2 MiB). blkid also calls an exFAT
// boot sector an empty "dos" table; the whole disk is shown with its filesystem.
TEST_F(PartitionsTest, FatAndExfatLabelsPastTheFirstMiBMatchBlkid) {
  std::string fat = Sparse("fat.img", 2ull << 30);
  EXPECT_EQ(RunTool({"mkfs.vfat", "-F", "32", "-n", "ESP", fat}), 0);
  std::string exfat = Sparse("exfat.img", 2ull << 30);
  EXPECT_EQ(RunTool({"mkfs.exfat", "-L", "EX", exfat}), 0);
  for (const std::string& image : {fat, exfat}) {
    SCOPED_TRACE(image);
    const SliceSource disk = OpenDisk(image);
    Result<DiskLayout> layout = ProbeDisk(disk);
    ASSERT_TRUE(layout.ok()) << layout.status().ToString();
    ASSERT_EQ(layout->partitions.size(), 1u);
    const Partition& whole = layout->partitions[0];
    EXPECT_EQ(whole.number, 0);
    auto truth = BlkidAt(image, whole);
    EXPECT_EQ(whole.type, truth["TYPE"]);
    EXPECT_EQ(whole.label, truth["LABEL"]);
    EXPECT_FALSE(whole.label.empty());
    EXPECT_EQ(whole.uuid, truth["UUID"]);
    EXPECT_EQ(layout->table, truth["PTTYPE"]);
  }
}

// A disk that cannot be read is the one failure of ProbeDisk; the error is the source's own.
class UnreadableSource final : public ByteSource {
 public:
  uint64_t size() const override { return 64 * kMiB; }
  Status ReadAt(uint64_t offset, std::span<uint8_t>) const override {
    return Status::IOError(name_ + ": saveset chunk at offset " + std::to_string(offset) +
                           " is missing");
  }
  const std::string& name() const override { return name_; }

 private:
  const std::string name_ = "vdg";
};

TEST(ProbeDiskTest, UnreadableDiskFails) {
  Result<DiskLayout> layout = ProbeDisk(UnreadableSource());
  ASSERT_FALSE(layout.ok());
  EXPECT_EQ(layout.status().code(), StatusCode::kIOError);
  EXPECT_EQ(layout.status().message(), "vdg: saveset chunk at offset 0 is missing");
}

TEST(DescribeLayoutTest, QuotesLikeBlkidAndKeepsOneLinePerPartition) {
  DiskLayout layout;
  layout.table = "dos";
  layout.table_uuid = "1234abcd";
  Partition p;
  p.number = 1;
  p.offset = 1048576;
  p.size = 2097152;
  p.type = "vfat";
  p.label = "a \"b\" \\c\nd";
  p.entry_type = "0xc";
  layout.partitions.push_back(p);
  EXPECT_EQ(DescribeLayout(layout),
            "PTTYPE=\"dos\" PTUUID=\"1234abcd\"\n"
            "1: START=1048576 SIZE=2097152 TYPE=\"vfat\" LABEL=\"a \\\"b\\\" \\\\c\\x0ad\" "
            "PART_ENTRY_TYPE=\"0xc\"\n");
}

}  // namespace
}  // namespace backupfs
