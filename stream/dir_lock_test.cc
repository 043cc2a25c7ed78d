#include "stream/dir_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include "stream/test_util.h"

namespace backupfs {
namespace {

using testing::ScratchDir;

TEST(SavesetLockTest, HoldersNameThisProcess) {
  ScratchDir dir;
  EXPECT_FALSE(SavesetBusy(dir.path()));
  auto lock = LockSaveset(dir.path());
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  EXPECT_TRUE(SavesetBusy(dir.path()));
  EXPECT_NE(LockHolders(dir.path()).find("pid " + std::to_string(getpid())), std::string::npos)
      << LockHolders(dir.path());
}

// flock locks belong to the open file description: a second open of the directory conflicts
// with the first even within one process, as another process's would.
TEST(SavesetLockTest, SecondWriterIsRefusedNamingTheHolder) {
  ScratchDir dir;
  auto first = LockSaveset(dir.path());
  ASSERT_TRUE(first.ok());
  auto second = LockSaveset(dir.path());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(dir.path() + " is in use by another run (pid " +
                                           std::to_string(getpid())),
            std::string::npos)
      << second.status().message();
}

TEST(SavesetLockTest, ReleasedWithItsOwner) {
  ScratchDir dir;
  { auto lock = LockSaveset(dir.path()); }
  EXPECT_FALSE(SavesetBusy(dir.path()));
  EXPECT_TRUE(LockSaveset(dir.path()).ok());
}

TEST(SavesetLockTest, MissingDirectoryIsNamed) {
  ScratchDir dir;
  auto lock = LockSaveset(dir.File("nope"));
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(lock.status().message().find(dir.File("nope")), std::string::npos);
}

}  // namespace
}  // namespace backupfs
