// The pieces of the storage interface that are plain logic: a store's stamp from its listing.
#include "stream/storage.h"

#include <gtest/gtest.h>

#include <vector>

namespace backupfs {
namespace {

std::vector<StoredObject> Listing() {
  return {{"vda.full.data", 1000, 3'000'000'001, "\"etag-a\""},
          {"vda.cpt", 20, 5'000'000'002, "\"etag-b\""},
          {"checkpoints/", 0, 0, ""}};
}

TEST(StampOfListing, EqualWhileNamesVersionsAndSizesAreWhateverTheOrder) {
  const StoreStamp a = StampOfListing("s3://b/vm", Listing());
  std::vector<StoredObject> reordered = Listing();
  std::swap(reordered[0], reordered[2]);
  const StoreStamp b = StampOfListing("s3://b/vm", reordered);
  EXPECT_TRUE(a.exists);
  EXPECT_EQ(a.identity, "s3://b/vm");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.mtime.tv_sec, 5);  // the newest object's
  EXPECT_EQ(a.mtime.tv_nsec, 2);
}

TEST(StampOfListing, ChangesWithAVersionASizeOrAName) {
  const StoreStamp before = StampOfListing("s3://b/vm", Listing());
  std::vector<StoredObject> l = Listing();
  l[1].version = "\"etag-c\"";
  EXPECT_NE(StampOfListing("s3://b/vm", l), before);
  l = Listing();
  l[0].size = 1001;
  EXPECT_NE(StampOfListing("s3://b/vm", l), before);
  l = Listing();
  l.push_back({"vda.inc.virtnbdbackup.1.data", 10, 1, "\"etag-d\""});
  EXPECT_NE(StampOfListing("s3://b/vm", l), before);
  // A name and a version cannot trade bytes and give the same digest.
  l = Listing();
  l[1].name += "x";
  l[1].version.erase(0, 1);
  EXPECT_NE(StampOfListing("s3://b/vm", l), before);
}

TEST(StampOfListing, NothingListedIsNoDirectory) {
  EXPECT_FALSE(StampOfListing("s3://b/vm", {}).exists);
}

TEST(JoinName, AddsOneSlash) {
  EXPECT_EQ(JoinName("", "a"), "a");
  EXPECT_EQ(JoinName("d", "a"), "d/a");
  EXPECT_EQ(JoinName("d/", "a"), "d/a");
}

}  // namespace
}  // namespace backupfs
