#include "stream/metadata.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

StreamMetadata Sample() {
  StreamMetadata m;
  m.virtual_size = 1 << 30;
  m.data_size = 4096;
  m.date = "2026-11-26T05:00:00.123456";
  m.disk_name = "vda";
  m.disk_format = "qcow2";
  m.checkpoint_name = "virtnbdbackup.1";
  m.parent_checkpoint = "virtnbdbackup.0";
  m.incremental = true;
  m.compression_level = 2;
  return m;
}

TEST(MetadataTest, RoundTrips) {
  StreamMetadata m = Sample();
  auto back = DecodeMetadata(EncodeMetadata(m), "f", 40);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->virtual_size, m.virtual_size);
  EXPECT_EQ(back->data_size, m.data_size);
  EXPECT_EQ(back->date, m.date);
  EXPECT_EQ(back->disk_name, "vda");
  EXPECT_EQ(back->disk_format, "qcow2");
  EXPECT_EQ(back->checkpoint_name, "virtnbdbackup.1");
  EXPECT_EQ(back->parent_checkpoint, "virtnbdbackup.0");
  EXPECT_TRUE(back->incremental);
  EXPECT_EQ(back->compression_level, 2);
  EXPECT_EQ(back->stream_version, 2);
}

TEST(MetadataTest, EncodesVirtnbdbackupKeysInOrder) {
  std::string json = EncodeMetadata(Sample());
  const char* keys[] = {"virtualSize",      "dataSize",       "date",         "diskName",
                        "diskFormat",       "checkpointName", "compressed",   "compressionMethod",
                        "parentCheckpoint", "incremental",    "streamVersion"};
  size_t pos = 0;
  for (const char* k : keys) {
    size_t at = json.find(std::string("\"") + k + "\": ", pos);
    ASSERT_NE(at, std::string::npos) << k;
    pos = at;
  }
  EXPECT_EQ(json.find("{\n    \"virtualSize\""), 0u);
}

TEST(MetadataTest, ReadsVersion1Spelling) {
  auto m = DecodeMetadata(
      R"({"virtualSize": 100, "dataSize": 0, "diskName": "sda", "stream-version": 1})", "f", 40);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->stream_version, 1);
  EXPECT_FALSE(m->compressed());
}

TEST(MetadataTest, IgnoresUnknownKeysButKeepsThemForDump) {
  auto m = DecodeMetadata(
      R"({"virtualSize": 100, "dataSize": 0, "diskName": "vda", "future": {"x": 1}})", "f", 40);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->raw.contains("future"));
}

TEST(MetadataTest, CompressedTrueMeansLevelZero) {
  auto m = DecodeMetadata(
      R"({"virtualSize": 1, "dataSize": 0, "diskName": "vda", "compressed": true, "streamVersion": 2})",
      "f", 40);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->compression_level, 0);
}

TEST(MetadataTest, RejectsBadJsonWithOffset) {
  auto m = DecodeMetadata("{\"virtualSize\": 1,", "vdb.full.data", 40);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "vdb.full.data: offset 40: metadata is not valid JSON");
}

TEST(MetadataTest, RejectsNonObject) { EXPECT_FALSE(DecodeMetadata("[1, 2]", "f", 40).ok()); }

TEST(MetadataTest, RejectsMissingKey) {
  auto m = DecodeMetadata(R"({"virtualSize": 100, "diskName": "vda"})", "f", 40);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("'dataSize' is missing"), std::string::npos);
}

TEST(MetadataTest, RejectsWrongTypes) {
  EXPECT_FALSE(
      DecodeMetadata(R"({"virtualSize": -1, "dataSize": 0, "diskName": "vda"})", "f", 40).ok());
  EXPECT_FALSE(
      DecodeMetadata(R"({"virtualSize": "1", "dataSize": 0, "diskName": "vda"})", "f", 40).ok());
  EXPECT_FALSE(DecodeMetadata(R"({"virtualSize": 1, "dataSize": 0, "diskName": 7})", "f", 40).ok());
  EXPECT_FALSE(
      DecodeMetadata(
          R"({"virtualSize": 1, "dataSize": 0, "diskName": "vda", "compressed": "yes", "streamVersion": 2})",
          "f", 40)
          .ok());
}

TEST(MetadataTest, RejectsUnknownVersionAndMethod) {
  EXPECT_FALSE(
      DecodeMetadata(R"({"virtualSize": 1, "dataSize": 0, "diskName": "vda", "streamVersion": 3})",
                     "f", 40)
          .ok());
  EXPECT_FALSE(
      DecodeMetadata(
          R"({"virtualSize": 1, "dataSize": 0, "diskName": "vda", "streamVersion": 2, "compressed": 1, "compressionMethod": "zstd"})",
          "f", 40)
          .ok());
}

TEST(MetadataTest, RejectsDataSizeLargerThanDisk) {
  EXPECT_FALSE(
      DecodeMetadata(R"({"virtualSize": 10, "dataSize": 11, "diskName": "vda"})", "f", 40).ok());
}

}  // namespace
}  // namespace backupfs

namespace backupfs {
namespace {

TEST(MetadataTest, RejectsVirtualSizeNoFileCanHave) {
  EXPECT_FALSE(
      DecodeMetadata(R"({"virtualSize": 9223372036854775808, "dataSize": 0, "diskName": "vda"})",
                     "f", 40)
          .ok());
  EXPECT_FALSE(
      DecodeMetadata(R"({"virtualSize": null, "dataSize": 0, "diskName": "vda"})", "f", 40).ok());
}

}  // namespace
}  // namespace backupfs
