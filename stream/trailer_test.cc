#include "stream/trailer.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

TEST(TrailerTest, EncodesLikePythonJsonDumps) {
  std::vector<TrailerEntry> t = {{{123}, false}, {{200, 256}, true}};
  EXPECT_EQ(EncodeTrailer(t), R"([123, {"456": [200, 256]}])");
  EXPECT_EQ(EncodeTrailer({}), "[]");
}

TEST(TrailerTest, RoundTrips) {
  std::vector<TrailerEntry> t = {{{1}, false}, {{7}, true}, {{3, 4, 5}, true}};
  auto back = DecodeTrailer(EncodeTrailer(t), "f", 0);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, t);
}

TEST(TrailerTest, AcceptsCompactJson) {
  auto back = DecodeTrailer(R"([5,{"3":[1,2]}])", "f", 0);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)[1].chunk_sizes, (std::vector<uint64_t>{1, 2}));
}

TEST(TrailerTest, RejectsTotalThatIsNotTheSum) {
  auto back = DecodeTrailer(R"([{"10": [1, 2]}])", "vda.inc.data", 999);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("vda.inc.data: offset 999"), std::string::npos);
  EXPECT_NE(back.status().message().find("entry 0"), std::string::npos);
}

TEST(TrailerTest, RejectsMalformedShapes) {
  for (const char* bad : {"{}", "[-1]", "[1.5]", "[\"1\"]", R"([{"x": [1]}])", R"([{"1": 1}])",
                          R"([{"0": []}])", R"([{"1": [1], "2": [2]}])", "[1,", ""}) {
    EXPECT_FALSE(DecodeTrailer(bad, "f", 0).ok()) << bad;
  }
}

}  // namespace
}  // namespace backupfs

namespace backupfs {
namespace {

// A TOTAL that only matches its chunks after 64-bit wrap-around must not pass.
TEST(TrailerTest, RejectsChunkSizesThatOverflow) {
  auto back = DecodeTrailer(R"([{"53": [18446744073709551521, 95, 53]}])", "f", 0);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("overflow"), std::string::npos);
}

}  // namespace
}  // namespace backupfs
