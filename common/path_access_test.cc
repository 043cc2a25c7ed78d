#include "common/path_access.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "stream/test_util.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

using testing::ScratchDir;

class PathAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() + "/a";
    fs::create_directories(root_ + "/b/c");
    chmod(dir_.path().c_str(), 0755);
  }
  ScratchDir dir_;
  std::string root_;
  // A user that owns nothing here and is in no group of these files.
  UserIdentity stranger_{54321, 54321, {}};
};

TEST_F(PathAccessTest, OpenDirectoriesPass) {
  chmod(root_.c_str(), 0711);
  chmod((root_ + "/b").c_str(), 0755);
  chmod((root_ + "/b/c").c_str(), 0701);
  EXPECT_TRUE(CheckUserCanReach(root_ + "/b/c", stranger_, "QEMU").ok());
}

TEST_F(PathAccessTest, AClosedDirectoryOnTheWayIsNamed) {
  chmod(root_.c_str(), 0755);
  chmod((root_ + "/b").c_str(), 0700);
  Status s = CheckUserCanReach(root_ + "/b/c", stranger_, "QEMU");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(root_ + "/b (mode 0700"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("QEMU (uid 54321)"), std::string::npos) << s.message();
}

TEST_F(PathAccessTest, GroupAndOwnerBitsApply) {
  chmod(root_.c_str(), 0750);
  struct stat st;
  ASSERT_EQ(stat(root_.c_str(), &st), 0);
  UserIdentity member{54321, 54321, {st.st_gid}};
  EXPECT_TRUE(CheckUserCanReach(root_, member, "QEMU").ok());
  UserIdentity owner{st.st_uid == 0 ? 54322u : st.st_uid, 54321, {}};
  if (st.st_uid != 0) {
    chmod(root_.c_str(), 0100);
    EXPECT_TRUE(CheckUserCanReach(root_, owner, "QEMU").ok());
  }
  EXPECT_FALSE(CheckUserCanReach(root_, stranger_, "QEMU").ok());
}

TEST_F(PathAccessTest, AMissingPathIsAnError) {
  Status s = CheckUserCanReach(root_ + "/nope", stranger_, "QEMU");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(root_ + "/nope"), std::string::npos);
}

}  // namespace
}  // namespace backupfs
