#include "capture/checkpoints.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace backupfs {
namespace {

TEST(CheckpointsTest, NamesAndNumbers) {
  EXPECT_EQ(CheckpointName(0), "virtnbdbackup.0");
  EXPECT_EQ(CheckpointNumber("virtnbdbackup.12"), 12u);
  for (const char* other : {"virtnbdbackup.", "virtnbdbackup.1a", "virtnbdbackup.-1",
                            "virtnbdbackup.+1", "mine.1", "virtnbdbackup1", ""}) {
    EXPECT_FALSE(IsOurCheckpoint(other)) << other;
  }
  EXPECT_TRUE(IsOurCheckpoint("virtnbdbackup.3"));
}

class CheckpointListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cpt_test." + std::to_string(getpid()) + "." +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(CheckpointListTest, MissingFileIsAnEmptyChain) {
  auto names = ReadCheckpointList(CheckpointListPath(dir_, "vm1"));
  ASSERT_TRUE(names.ok());
  EXPECT_TRUE(names->empty());
}

TEST_F(CheckpointListTest, RoundTripsInVirtnbdbackupsFormat) {
  const std::string path = CheckpointListPath(dir_, "vm1");
  EXPECT_EQ(path, dir_.string() + "/vm1.cpt");
  ASSERT_TRUE(WriteCheckpointList(path, {"virtnbdbackup.0", "virtnbdbackup.1"}).ok());
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, R"(["virtnbdbackup.0","virtnbdbackup.1"])");
  auto names = ReadCheckpointList(path);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"virtnbdbackup.0", "virtnbdbackup.1"}));
}

TEST_F(CheckpointListTest, MalformedFileIsCorruptionNamingIt) {
  const std::string path = CheckpointListPath(dir_, "vm1");
  for (const char* bad : {"", "{", "{\"a\":1}", "[1,2]", "[\"virtnbdbackup.0\""}) {
    std::ofstream(path, std::ios::trunc) << bad;
    auto names = ReadCheckpointList(path);
    ASSERT_FALSE(names.ok()) << bad;
    EXPECT_EQ(names.status().code(), StatusCode::kCorruption) << bad;
    EXPECT_NE(names.status().message().find(path), std::string::npos);
  }
}

// After a consolidation the list starts past 0: the next name follows the highest number.
TEST(CheckpointsTest, NextNameFollowsTheHighestNumber) {
  EXPECT_EQ(NextCheckpointName({}), "virtnbdbackup.0");
  EXPECT_EQ(NextCheckpointName({"virtnbdbackup.0", "virtnbdbackup.1"}), "virtnbdbackup.2");
  EXPECT_EQ(NextCheckpointName({"virtnbdbackup.3", "virtnbdbackup.4", "virtnbdbackup.5"}),
            "virtnbdbackup.6");
  EXPECT_EQ(NextCheckpointName({"virtnbdbackup.9"}), "virtnbdbackup.10");
}

TEST(CheckpointXmlTest, HasNameParentAndDisks) {
  std::string x =
      BuildCheckpointXml("virtnbdbackup.1", "virtnbdbackup.0", {{"vda", true}, {"vdb", false}});
  EXPECT_NE(x.find("<name>virtnbdbackup.1</name>"), std::string::npos);
  EXPECT_NE(x.find("<parent><name>virtnbdbackup.0</name></parent>"), std::string::npos);
  EXPECT_NE(x.find("<disk name='vda' checkpoint='bitmap'/>"), std::string::npos);
  EXPECT_NE(x.find("<disk name='vdb' checkpoint='no'/>"), std::string::npos);
  EXPECT_EQ(BuildCheckpointXml("virtnbdbackup.0", "", {{"vda", true}}).find("<parent>"),
            std::string::npos);
}

TEST(BackupXmlTest, PullModeWithSocketScratchAndIncremental) {
  std::string x = BuildBackupXml(JobServer::Unix("/var/tmp/d/sock"), "/var/tmp/d",
                                 "virtnbdbackup.0", {{"vda", true}, {"vdb", false}});
  EXPECT_NE(x.find("<domainbackup mode='pull'>"), std::string::npos);
  EXPECT_NE(x.find("<incremental>virtnbdbackup.0</incremental>"), std::string::npos);
  EXPECT_NE(x.find("<server transport='unix' socket='/var/tmp/d/sock'/>"), std::string::npos);
  EXPECT_NE(x.find("<disk name='vda' backup='yes' type='file'><scratch "
                   "file='/var/tmp/d/vda.scratch'/></disk>"),
            std::string::npos);
  EXPECT_NE(x.find("<disk name='vdb' backup='no'/>"), std::string::npos);
  EXPECT_EQ(BuildBackupXml(JobServer::Unix("/s"), "/d", "", {{"vda", true}}).find("<incremental>"),
            std::string::npos);
}

TEST(BackupXmlTest, EscapesSpecialCharacters) {
  std::string x = BuildBackupXml(JobServer::Unix("/tmp/a'b&c"), "/d", "", {{"vda", true}});
  EXPECT_NE(x.find("socket='/tmp/a&apos;b&amp;c'"), std::string::npos);
}

TEST(BackupXmlTest, TcpServerWithAndWithoutTls) {
  std::string plain =
      BuildBackupXml(JobServer::Tcp("127.0.0.2", 10809, false), "/d", "", {{"vda", true}});
  EXPECT_NE(plain.find("<server transport='tcp' name='127.0.0.2' port='10809'/>"),
            std::string::npos);
  std::string tls = BuildBackupXml(JobServer::Tcp("h&1", 1, true), "/d", "", {{"vda", true}});
  EXPECT_NE(tls.find("<server transport='tcp' name='h&amp;1' port='1' tls='yes'/>"),
            std::string::npos);
}

}  // namespace
}  // namespace backupfs
