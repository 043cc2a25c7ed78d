// The chain resolver over savesets written with the stream writer into a scratch directory:
// order, parent links, broken chains, diffs, copies, disks added mid-chain, and an order that
// does not follow the metadata's local-time date strings.
#include "backupfs/chain.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>

#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::RandomBytes;
using testing::ScratchDir;

std::string Cp(int n) { return "virtnbdbackup." + std::to_string(n); }

// Sets TZ for one scope (glibc reads it again on tzset()), and puts the old value back.
class ScopedTz {
 public:
  explicit ScopedTz(const char* zone) {
    if (const char* old = std::getenv("TZ")) old_ = old;
    ::setenv("TZ", zone, 1);
    ::tzset();
  }
  ~ScopedTz() {
    if (old_) {
      ::setenv("TZ", old_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }

 private:
  std::optional<std::string> old_;
};

class ChainTest : public ::testing::Test {
 protected:
  // One data file: 4 KiB of data at a place that depends on `seed`, on a 1 MiB disk.
  void Write(const std::string& file, StreamMetadata meta, uint64_t seed = 1) {
    const std::vector<uint8_t> bytes = RandomBytes(4096, seed);
    if (meta.virtual_size == 0) meta.virtual_size = 1u << 20;
    meta.data_size = bytes.size();
    meta.disk_format = "qcow2";
    WriterOptions options;
    options.durable = false;
    auto w = StreamWriter::Create(dir_.File(file), meta, options);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->AddData((seed % 16) * 4096, bytes).ok());
    Status s = (*w)->Finish();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  StreamMetadata Meta(const std::string& disk, const std::string& checkpoint,
                      const std::string& parent, bool incremental, const std::string& date) {
    StreamMetadata m;
    m.disk_name = disk;
    m.checkpoint_name = checkpoint;
    m.parent_checkpoint = parent;
    m.incremental = incremental;
    m.date = date;
    return m;
  }
  void Full(const std::string& disk, int cp, const std::string& date = "2026-01-01T10:00:00") {
    Write(disk + ".full.data", Meta(disk, Cp(cp), "", false, date));
  }
  void Inc(const std::string& disk, const std::string& checkpoint, const std::string& parent,
           const std::string& date = "2026-01-01T11:00:00") {
    Write(disk + ".inc." + checkpoint + ".data", Meta(disk, checkpoint, parent, true, date),
          checkpoint.size());
  }
  void Inc(const std::string& disk, int cp, int parent,
           const std::string& date = "2026-01-01T11:00:00") {
    Inc(disk, Cp(cp), Cp(parent), date);
  }
  // virtnbdbackup names a diff's metadata checkpoint after the next one, not yet created.
  void Diff(const std::string& disk, uint64_t unixtime, int parent,
            const std::string& date = "2026-01-01T12:00:00") {
    Write(disk + ".diff." + std::to_string(unixtime) + ".data",
          Meta(disk, Cp(parent + 1), Cp(parent), true, date), unixtime);
  }
  void Copy(const std::string& disk, const std::string& date) {
    Write(disk + ".copy.data", Meta(disk, "", "", false, date));
  }
  void CheckpointList(const std::string& json) { std::ofstream(dir_.File("demo.cpt")) << json; }

  SavesetModel Load() {
    auto model = LoadSaveset(dir_.path(), OpenOptions{});
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    return model.ok() ? std::move(model).value() : SavesetModel{};
  }
  static std::vector<std::string> Names(const SavesetModel& m) {
    std::vector<std::string> out;
    for (const RestorePoint& p : m.points) out.push_back(p.name);
    return out;
  }
  static const RestorePoint* Point(const SavesetModel& m, const std::string& name) {
    for (const RestorePoint& p : m.points) {
      if (p.name == name) return &p;
    }
    return nullptr;
  }
  // The data files of `disk` at `point`, oldest first, as names in the directory.
  static std::vector<std::string> ChainFiles(const SavesetModel& m, const std::string& point,
                                             const std::string& disk) {
    std::vector<std::string> out;
    const RestorePoint* p = Point(m, point);
    if (p == nullptr) return {"<no point " + point + ">"};
    for (const DiskChain& c : p->disks) {
      if (c.disk != disk) continue;
      for (const auto& r : c.files) out.push_back(r->path());
    }
    return out;
  }
  // True when one problem message holds every one of `parts`.
  static bool HasProblem(const SavesetModel& m, const std::vector<std::string>& parts) {
    for (const std::string& problem : m.problems) {
      bool all = true;
      for (const std::string& part : parts) all = all && problem.find(part) != std::string::npos;
      if (all) return true;
    }
    return false;
  }
  std::string Path(const std::string& file) const { return dir_.File(file); }

  ScratchDir dir_;
};

TEST_F(ChainTest, FullAndIncsResolveInChainOrder) {
  Full("vda", 0);
  // Eleven incs, so that a name order would put virtnbdbackup.10 before virtnbdbackup.2.
  for (int i = 1; i <= 11; ++i) Inc("vda", i, i - 1);
  SavesetModel m = Load();
  std::vector<std::string> want;
  for (int i = 0; i <= 11; ++i) want.push_back(Cp(i));
  EXPECT_EQ(Names(m), want);
  EXPECT_EQ(m.latest, Cp(11));
  EXPECT_TRUE(m.problems.empty()) << m.problems.front();
  EXPECT_EQ(ChainFiles(m, Cp(0), "vda"), std::vector<std::string>{Path("vda.full.data")});
  EXPECT_EQ(ChainFiles(m, Cp(2), "vda"),
            (std::vector<std::string>{Path("vda.full.data"), Path("vda.inc.virtnbdbackup.1.data"),
                                      Path("vda.inc.virtnbdbackup.2.data")}));
  EXPECT_EQ(ChainFiles(m, Cp(11), "vda").size(), 12u);
}

TEST_F(ChainTest, ReuseHookSuppliesReadersOfUnchangedFiles) {
  Full("vda", 0);
  Inc("vda", 1, 0);
  SavesetModel first = Load();
  ASSERT_EQ(Names(first), (std::vector<std::string>{Cp(0), Cp(1)}));
  std::shared_ptr<StreamReader> full = Point(first, Cp(0))->disks[0].files[0];
  Inc("vda", 2, 1);
  std::vector<std::string> asked;
  OpenOptions options;
  options.reuse = [&](const std::string& path, const std::string& version) {
    asked.push_back(path);
    // The listing's version is the one the opened file has.
    if (path == full->path()) {
      EXPECT_EQ(version, full->file().version());
    }
    return path == full->path() ? full : nullptr;
  };
  auto again = LoadSaveset(dir_.path(), options);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(asked.size(), 3u);  // every data file is offered to the hook
  ASSERT_EQ(Names(*again), (std::vector<std::string>{Cp(0), Cp(1), Cp(2)}));
  // The same reader object, not a second open of the file.
  EXPECT_EQ(Point(*again, Cp(2))->disks[0].files[0].get(), full.get());
  EXPECT_NE(Point(*again, Cp(2))->disks[0].files[1].get(),
            Point(first, Cp(1))->disks[0].files[1].get());
}

TEST_F(ChainTest, ParentLoopMakesPointsUnavailableWithoutHanging) {
  Full("vda", 0);
  Inc("vda", 1, 2);  // 1 -> 2 -> 1
  Inc("vda", 2, 1);
  Inc("vda", 3, 3);  // its own parent
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), std::vector<std::string>{Cp(0)});
  EXPECT_EQ(m.latest, Cp(0));
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(HasProblem(m, {"restore point " + Cp(i) + " unavailable", "loops back"})) << Cp(i);
  }
  EXPECT_TRUE(HasProblem(m, {Path("vda.inc.virtnbdbackup.3.data"), "loops back"}));
}

TEST_F(ChainTest, DiffSitsOnItsCheckpointInUnixTimeOrder) {
  Full("vda", 0);
  Inc("vda", 1, 0, "2026-01-01T11:00:00");
  // Two diffs against virtnbdbackup.1 whose names sort the other way as text, dated after the
  // inc that followed them (a clock or zone change): neither decides the order.
  Diff("vda", 999999999, 1, "2026-01-01T13:00:00");
  Diff("vda", 1000000000, 1, "2026-01-01T12:30:00");
  Inc("vda", 2, 1, "2026-01-01T12:00:00");
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), (std::vector<std::string>{Cp(0), Cp(1), "999999999", "1000000000", Cp(2)}));
  EXPECT_EQ(m.latest, Cp(2));
  EXPECT_TRUE(m.problems.empty()) << m.problems.front();
  EXPECT_EQ(ChainFiles(m, "1000000000", "vda"),
            (std::vector<std::string>{Path("vda.full.data"), Path("vda.inc.virtnbdbackup.1.data"),
                                      Path("vda.diff.1000000000.data")}));
}

TEST_F(ChainTest, NewestDiffIsLatest) {
  Full("vda", 0);
  Inc("vda", 1, 0);
  Diff("vda", 1700000000, 1);
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), (std::vector<std::string>{Cp(0), Cp(1), "1700000000"}));
  EXPECT_EQ(m.latest, "1700000000");
}

TEST_F(ChainTest, DiffOnAMissingCheckpointIsUnavailableNamingTheDiff) {
  Full("vda", 0);
  Diff("vda", 1700000000, 4);
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), std::vector<std::string>{Cp(0)});
  EXPECT_TRUE(HasProblem(m, {"restore point 1700000000 unavailable", "'" + Cp(4) + "'",
                             Path("vda.diff.1700000000.data")}));
}

TEST_F(ChainTest, DiskNameMismatchIsRefusedNamingTheFile) {
  Full("vda", 0);
  Write("vdb.full.data", Meta("vda", Cp(0), "", false, "2026-01-01T10:00:00"));
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), std::vector<std::string>{Cp(0)});
  ASSERT_EQ(Point(m, Cp(0))->disks.size(), 1u);
  EXPECT_EQ(Point(m, Cp(0))->disks[0].disk, "vda");
  EXPECT_TRUE(HasProblem(m, {Path("vdb.full.data"), "disk 'vda'", "'vdb'"}));
}

TEST_F(ChainTest, CheckpointNameMismatchIsRefusedNamingTheFile) {
  Full("vda", 0);
  Write("vda.inc.virtnbdbackup.1.data", Meta("vda", Cp(7), Cp(0), true, "2026-01-01T11:00:00"));
  Inc("vda", 2, 1);
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), std::vector<std::string>{Cp(0)});
  EXPECT_TRUE(HasProblem(m, {Path("vda.inc.virtnbdbackup.1.data"), "'" + Cp(7) + "'"}));
  // The point after it has lost its parent.
  EXPECT_TRUE(HasProblem(m, {"restore point " + Cp(2) + " unavailable"}));
}

TEST_F(ChainTest, MissingParentCutsTheChainThere) {
  Full("vda", 0);
  Inc("vda", 1, 0);
  Inc("vda", 3, 2);  // virtnbdbackup.2 is gone
  Inc("vda", 4, 3);
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), (std::vector<std::string>{Cp(0), Cp(1)}));
  EXPECT_EQ(m.latest, Cp(1));
  const std::string inc3 = Path("vda.inc.virtnbdbackup.3.data");
  EXPECT_TRUE(HasProblem(m, {"restore point " + Cp(3) + " unavailable", "'" + Cp(2) + "'", inc3}));
  EXPECT_TRUE(HasProblem(m, {"restore point " + Cp(4) + " unavailable", "'" + Cp(2) + "'", inc3}));
  EXPECT_EQ(
      ChainFiles(m, Cp(1), "vda"),
      (std::vector<std::string>{Path("vda.full.data"), Path("vda.inc.virtnbdbackup.1.data")}));
}

// Europe/Berlin leaves summer time on 2023-10-29 at 03:00 CEST, back to 02:00 CET: the local
// hour 02:00-03:00 happens twice, and a later backup can carry an earlier date string.
TEST_F(ChainTest, OrderIgnoresTimeZoneAndDstFallBack) {
  Full("vda", 0, "2023-10-29T02:50:00.000000");       // 00:50 UTC (CEST)
  Inc("vda", 1, 0, "2023-10-29T02:10:00.000000");     // 01:10 UTC (CET)
  Inc("vda", 2, 1, "2023-10-29T02:40:00.000000");     // 01:40 UTC
  Diff("vda", 1698543900, 2, "2023-10-29T02:45:00");  // 01:45 UTC
  Diff("vda", 1698544500, 2, "2023-10-29T01:55:00");  // 01:55 UTC, host moved to UTC
  const std::vector<std::string> want = {Cp(0), Cp(1), Cp(2), "1698543900", "1698544500"};
  for (bool with_list : {false, true}) {
    if (with_list) CheckpointList(R"(["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"])");
    for (const char* zone : {"Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"}) {
      ScopedTz tz(zone);
      SavesetModel m = Load();
      EXPECT_EQ(Names(m), want) << zone << (with_list ? " with .cpt" : "");
      EXPECT_EQ(m.latest, "1698544500") << zone;
      EXPECT_TRUE(m.problems.empty()) << m.problems.front();
    }
  }
}

TEST_F(ChainTest, DiskAddedMidChainJoinsLaterPoints) {
  Full("vda", 0);
  Inc("vda", 1, 0);
  Inc("vda", 2, 1);
  // vdb was attached before virtnbdbackup.1: its full backup carries that checkpoint.
  Write("vdb.full.data", Meta("vdb", Cp(1), "", false, "2026-01-01T11:00:00"));
  Inc("vdb", 2, 1);
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), (std::vector<std::string>{Cp(0), Cp(1), Cp(2)}));
  EXPECT_EQ(m.latest, Cp(2));
  EXPECT_TRUE(m.problems.empty()) << m.problems.front();
  ASSERT_EQ(Point(m, Cp(0))->disks.size(), 1u);
  EXPECT_EQ(Point(m, Cp(0))->disks[0].disk, "vda");
  EXPECT_EQ(ChainFiles(m, Cp(1), "vdb"), std::vector<std::string>{Path("vdb.full.data")});
  EXPECT_EQ(
      ChainFiles(m, Cp(2), "vdb"),
      (std::vector<std::string>{Path("vdb.full.data"), Path("vdb.inc.virtnbdbackup.2.data")}));
  EXPECT_EQ(ChainFiles(m, Cp(2), "vda").size(), 3u);
}

TEST_F(ChainTest, CopyFollowsTheCheckpointsBeforeItsDate) {
  Copy("vda", "2020-01-01T00:00:00");  // before every checkpoint: first
  Full("vda", 0);
  Inc("vda", 1, 0);
  Diff("vda", 1700000000, 1);
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), (std::vector<std::string>{"copy", Cp(0), Cp(1), "1700000000"}));
  EXPECT_EQ(m.latest, "1700000000");
  EXPECT_EQ(ChainFiles(m, "copy", "vda"), std::vector<std::string>{Path("vda.copy.data")});
}

TEST_F(ChainTest, CopyTakenBetweenTwoIncsSitsBetweenThem) {
  Full("vda", 0, "2026-01-01T10:00:00");
  Inc("vda", 1, 0, "2026-01-01T11:00:00");
  Diff("vda", 1700000000, 1, "2026-01-01T11:30:00");
  Copy("vda", "2026-01-01T11:45:00");
  Inc("vda", 2, 1, "2026-01-01T12:00:00");
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), (std::vector<std::string>{Cp(0), Cp(1), "1700000000", "copy", Cp(2)}));
  EXPECT_EQ(m.latest, Cp(2));
}

TEST_F(ChainTest, CopyAloneIsLatest) {
  Copy("vda", "2026-01-01T10:00:00");
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), std::vector<std::string>{"copy"});
  EXPECT_EQ(m.latest, "copy");
}

TEST_F(ChainTest, BranchesAtOneDepthFollowTheCheckpointList) {
  Full("vda", 0);
  Inc("vda", "branch-a", Cp(0));
  Inc("vda", "branch-b", Cp(0));
  SavesetModel without = Load();
  EXPECT_EQ(Names(without), (std::vector<std::string>{Cp(0), "branch-a", "branch-b"}));
  CheckpointList(R"(["virtnbdbackup.0", "branch-b", "branch-a"])");
  SavesetModel with = Load();
  EXPECT_EQ(Names(with), (std::vector<std::string>{Cp(0), "branch-b", "branch-a"}));
  EXPECT_EQ(with.latest, "branch-a");
}

TEST_F(ChainTest, ChainPositionWinsOverAStaleCheckpointList) {
  Full("vda", 0);
  Inc("vda", 1, 0);
  Inc("vda", 2, 1);
  CheckpointList(R"(["virtnbdbackup.2", "virtnbdbackup.1", "virtnbdbackup.0"])");
  SavesetModel m = Load();
  EXPECT_EQ(Names(m), (std::vector<std::string>{Cp(0), Cp(1), Cp(2)}));
  EXPECT_EQ(m.latest, Cp(2));
}

TEST_F(ChainTest, IncWithoutFullIsReportedNamingTheFile) {
  Inc("vda", 1, 0);
  SavesetModel m = Load();
  EXPECT_TRUE(m.points.empty());
  EXPECT_EQ(m.latest, "");
  EXPECT_TRUE(HasProblem(m, {Path("vda.inc.virtnbdbackup.1.data"), "no full backup"}));
}

}  // namespace
}  // namespace backupfs
