#include "common/subprocess.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

TEST(SubprocessTest, CollectsStdout) {
  auto out = RunCapture({"printf", "%s|%s", "a b", "c'd"});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, "a b|c'd");  // arguments reach the program unsplit, no shell
}

TEST(SubprocessTest, NonZeroExitCarriesStderr) {
  auto out = RunCapture({"sh", "-c", "echo first >&2; echo bad thing >&2; exit 3"});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("sh exited with 3: bad thing"), std::string::npos)
      << out.status().message();
}

TEST(SubprocessTest, MissingProgramFails) {
  auto out = RunCapture({"backupfs-no-such-program-xyz"});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("backupfs-no-such-program-xyz"), std::string::npos);
}

TEST(SubprocessTest, LargeOutputOnBothStreams) {
  auto out = RunCapture({"sh", "-c", "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2"});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->size(), 1000000u);
}

}  // namespace
}  // namespace backupfs
