// RetentionPoint: which point a retention policy consolidates at, over generated savesets.
#include <gtest/gtest.h>

#include <ctime>

#include "restore/consolidate.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::ScratchDir;

std::string Cp(int n) { return "virtnbdbackup." + std::to_string(n); }

class RetentionTest : public ::testing::Test {
 protected:
  // Point `n` of the chain, taken `days_ago` days before kNow.
  void Write(const std::string& file, const std::string& checkpoint, const std::string& parent,
             int days_ago) {
    StreamMetadata m;
    m.disk_name = "vda";
    m.checkpoint_name = checkpoint;
    m.parent_checkpoint = parent;
    m.incremental = !parent.empty();
    m.virtual_size = 1u << 20;
    std::time_t t = kNow - days_ago * 86400;
    std::tm tm{};
    localtime_r(&t, &tm);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    m.date = date;
    WriterOptions o;
    o.durable = false;
    auto w = StreamWriter::Create(dir_.File(file), m, o);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddZero(0, 4096).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  // A full 10 days ago, then an inc a day until today, and a diff against inc 7.
  SavesetModel Chain() {
    Write("vda.full.data", Cp(0), "", 10);
    for (int i = 1; i <= 10; ++i) Write("vda.inc." + Cp(i) + ".data", Cp(i), Cp(i - 1), 10 - i);
    Write("vda.diff.1700000000.data", Cp(8), Cp(7), 3);
    Write("vda.copy.data", Cp(0), "", 0);
    auto m = LoadSaveset(dir_.path(), OpenOptions{});
    EXPECT_TRUE(m.ok());
    return std::move(m).value();
  }
  static constexpr std::time_t kNow = 1790000000;
  ScratchDir dir_;
};

TEST_F(RetentionTest, KeepLastCountsPointsButNotCopies) {
  SavesetModel m = Chain();  // 0..7, diff, 8, 9, 10 (and the copy)
  EXPECT_EQ(RetentionPoint(m, {3u, std::nullopt}, kNow), Cp(8));
  EXPECT_EQ(RetentionPoint(m, {1u, std::nullopt}, kNow), Cp(10));
  EXPECT_EQ(RetentionPoint(m, {100u, std::nullopt}, kNow), "");
}

TEST_F(RetentionTest, AKeptDiffKeepsItsCheckpoint) {
  SavesetModel m = Chain();
  EXPECT_EQ(RetentionPoint(m, {4u, std::nullopt}, kNow), Cp(7));
}

TEST_F(RetentionTest, KeepDaysByTheMetadataDate) {
  SavesetModel m = Chain();
  // Younger than 2.5 days: incs 8, 9, 10 (2, 1, 0 days old).
  EXPECT_EQ(RetentionPoint(m, {std::nullopt, 2u}, kNow - 43200), Cp(8));
  // Either rule keeps a point: the last 5 reach back further than 2 days.
  EXPECT_EQ(RetentionPoint(m, {5u, 2u}, kNow - 43200), Cp(7));
  // Nothing younger: the newest point stays all the same.
  EXPECT_EQ(RetentionPoint(m, {std::nullopt, 1u}, kNow + 30 * 86400), Cp(10));
}

}  // namespace
}  // namespace backupfs
