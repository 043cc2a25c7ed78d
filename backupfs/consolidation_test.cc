// Consolidation without FUSE or libvirt: the plan over generated savesets, the journal and its
// roll forward, the listing readers see at every stage, and the full-backup writer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "backupfs/chain.h"
#include "backupfs/consolidation_journal.h"
#include "backupfs/consolidation_plan.h"
#include "backupfs/full_writer.h"
#include "backupfs/image.h"
#include "backupfs/saveset.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;
using testing::RandomBytes;
using testing::ScratchDir;

std::string Cp(int n) { return "virtnbdbackup." + std::to_string(n); }

class ConsolidationTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kDisk = 1u << 20;

  // A data file of `disk` holding 8 KiB of data at a place that depends on `seed`, and a zero
  // frame after it.
  void Write(const std::string& file, const std::string& disk, const std::string& checkpoint,
             const std::string& parent, int seed) {
    StreamMetadata m;
    m.disk_name = disk;
    m.disk_format = "qcow2";
    m.checkpoint_name = checkpoint;
    m.parent_checkpoint = parent;
    m.incremental = !parent.empty();
    m.date = "2026-01-01T10:00:0" + std::to_string(seed % 10);
    m.virtual_size = kDisk;
    const std::vector<uint8_t> bytes = RandomBytes(8192, seed);
    m.data_size = bytes.size();
    WriterOptions o;
    o.durable = false;
    auto w = StreamWriter::Create(dir_.File(file), m, o);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const uint64_t at = static_cast<uint64_t>(seed % 32) * 16384;
    ASSERT_TRUE((*w)->AddData(at, bytes).ok());
    ASSERT_TRUE((*w)->AddZero(at + 8192, 4096).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  void Touch(const std::string& name, const std::string& text = "x") {
    fs::create_directories(fs::path(dir_.File(name)).parent_path());
    std::ofstream(dir_.File(name)) << text;
  }
  // full, inc 1..5 on vda and vdb; a diff against 1 and one against 4; a copy; .cpt and the
  // per-point files.
  void SixPoints() {
    for (const char* disk : {"vda", "vdb"}) {
      const std::string d = disk;
      Write(d + ".full.data", d, Cp(0), "", 1);
      for (int i = 1; i <= 5; ++i) {
        Write(d + ".inc." + Cp(i) + ".data", d, Cp(i), Cp(i - 1), 10 * i + d.size());
      }
      Write(d + ".diff.1700000001.data", d, Cp(2), Cp(1), 77);
      Write(d + ".diff.1700000004.data", d, Cp(5), Cp(4), 78);
      Write(d + ".copy.data", d, Cp(0), "", 79);
      for (int i = 0; i <= 5; ++i) Touch(d + "." + Cp(i) + ".qcow.json");
    }
    for (int i = 0; i <= 5; ++i) {
      Touch("vmconfig." + Cp(i) + ".xml");
      Touch("checkpoints/" + Cp(i) + ".xml", "<domaincheckpoint><name>" + Cp(i) +
                                                 "</name><parent><name>" + Cp(i - 1) +
                                                 "</name></parent></domaincheckpoint>");
    }
    Touch("vmconfig.1700000001.xml");
    Touch("OVMF_VARS.fd." + Cp(1));
    Touch("backup.inc.01012026100000.log");
    Touch("demo.cpt", R"(["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2",
                        "virtnbdbackup.3", "virtnbdbackup.4", "virtnbdbackup.5"])");
  }
  SavesetModel Load() {
    auto m = LoadSaveset(dir_.path(), OpenOptions{});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return std::move(m).value();
  }
  // Every point's image bytes, by point and disk.
  std::map<std::string, std::vector<uint8_t>> Images(const SavesetModel& m) {
    std::map<std::string, std::vector<uint8_t>> out;
    for (const RestorePoint& p : m.points) {
      for (const DiskChain& c : p.disks) {
        auto image = DiskImage::Build(c);
        std::vector<uint8_t> bytes(image->size());
        EXPECT_TRUE(image->Read(0, bytes).ok());
        out[p.name + "/" + c.disk] = std::move(bytes);
      }
    }
    return out;
  }

  ScratchDir dir_;
};

TEST_F(ConsolidationTest, PlanFoldsOlderPointsAndTheirDiffs) {
  SixPoints();
  SavesetModel model = Load();
  auto plan = PlanConsolidation(model, Cp(3));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->folded_points, (std::vector<std::string>{Cp(0), Cp(1), "1700000001", Cp(2)}));
  EXPECT_EQ(plan->kept_points,
            (std::vector<std::string>{Cp(3), Cp(4), "1700000004", Cp(5), "copy"}));
  ASSERT_EQ(plan->fulls.size(), 2u);
  EXPECT_EQ(plan->fulls[0].file, "vda.full.data");
  EXPECT_EQ(plan->fulls[0].meta.checkpoint_name, Cp(3));
  EXPECT_EQ(plan->fulls[0].meta.parent_checkpoint, "");
  EXPECT_FALSE(plan->fulls[0].meta.incremental);
  EXPECT_EQ(plan->checkpoint_list, (std::vector<std::string>{Cp(3), Cp(4), Cp(5)}));
  EXPECT_EQ(plan->libvirt_checkpoints, (std::vector<std::string>{Cp(0), Cp(1), Cp(2)}));
  EXPECT_EQ(plan->domain, "demo");
  EXPECT_EQ(plan->checkpoint_xml, "checkpoints/" + Cp(3) + ".xml");
  auto goes = [&](const std::string& f) {
    return std::find(plan->remove.begin(), plan->remove.end(), f) != plan->remove.end();
  };
  for (const char* d : {"vda", "vdb"}) {
    const std::string disk = d;
    for (int i = 1; i <= 3; ++i) {
      EXPECT_TRUE(goes(disk + ".inc." + Cp(i) + ".data")) << disk << i;
      EXPECT_TRUE(goes(disk + ".inc." + Cp(i) + ".data.idx")) << disk << i;
      EXPECT_TRUE(goes(disk + ".inc." + Cp(i) + ".data.chksum")) << disk << i;
    }
    EXPECT_TRUE(goes(disk + ".diff.1700000001.data"));
    EXPECT_TRUE(goes(disk + "." + Cp(0) + ".qcow.json"));
    EXPECT_FALSE(goes(disk + ".full.data")) << "replaced, not removed";
    EXPECT_FALSE(goes(disk + ".inc." + Cp(4) + ".data"));
    EXPECT_FALSE(goes(disk + ".diff.1700000004.data"));
    EXPECT_FALSE(goes(disk + ".copy.data"));
    EXPECT_FALSE(goes(disk + "." + Cp(3) + ".qcow.json"));
  }
  EXPECT_TRUE(goes("vmconfig.1700000001.xml"));
  EXPECT_TRUE(goes("OVMF_VARS.fd." + Cp(1)));
  EXPECT_TRUE(goes("checkpoints/" + Cp(2) + ".xml"));
  EXPECT_FALSE(goes("checkpoints/" + Cp(3) + ".xml"));
  EXPECT_FALSE(goes("backup.inc.01012026100000.log"));
}

TEST_F(ConsolidationTest, RefusesWhatItCannotFold) {
  SixPoints();
  SavesetModel model = Load();
  auto unknown = PlanConsolidation(model, "virtnbdbackup.9");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find(dir_.path() + " has no restore point "
                                                          "'virtnbdbackup.9'"),
            std::string::npos);
  for (const char* point : {"1700000004", "copy"}) {
    auto p = PlanConsolidation(model, point);
    ASSERT_FALSE(p.ok()) << point;
    EXPECT_NE(p.status().message().find("only a checkpoint"), std::string::npos);
  }
  auto full = PlanConsolidation(model, Cp(0));
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(full->nothing_to_do());
  fs::remove(dir_.File("vdb.inc." + Cp(2) + ".data"));
  auto damaged = PlanConsolidation(Load(), Cp(4));
  ASSERT_FALSE(damaged.ok());
  EXPECT_NE(damaged.status().message().find("is damaged"), std::string::npos);
}

// Stage, commit and roll forward by hand, as restore/consolidate.cc does, checking what a
// reader sees at each step: the old points before the commit, the new ones after it.
TEST_F(ConsolidationTest, ReadersSeeOldOrNewNeverAMix) {
  SixPoints();
  SavesetModel before = Load();
  const auto images = Images(before);
  auto plan = PlanConsolidation(before, Cp(3));
  ASSERT_TRUE(plan.ok());
  const std::string staging = StagingDir(dir_.path());
  fs::create_directories(staging);
  ConsolidationJournal j;
  j.point = Cp(3);
  for (const NewFull& f : plan->fulls) {
    auto image = DiskImage::Build(f.chain);
    WriterOptions o;
    o.durable = false;
    ASSERT_TRUE(WriteFullBackup(*image, f.meta, staging + "/" + f.file, o).ok());
    for (const char* s : {".idx", ".chksum"}) {
      j.install.emplace_back(std::string(kStagingDirName) + "/" + f.file + s, f.file + s);
    }
    j.install.emplace_back(std::string(kStagingDirName) + "/" + f.file, f.file);
  }
  j.remove = plan->remove;
  j.domain = plan->domain;
  j.libvirt_checkpoints = plan->libvirt_checkpoints;
  // Staged, not committed: the old saveset, whole.
  EXPECT_EQ(Images(Load()), images);
  ASSERT_TRUE(CommitJournal(dir_.path(), j).ok());
  auto check_new = [&](const char* when) {
    SavesetModel m = Load();
    EXPECT_TRUE(m.damage.empty()) << when << ": " << m.damage.front();
    std::vector<std::string> names;
    for (const RestorePoint& p : m.points) names.push_back(p.name);
    EXPECT_EQ(names, plan->kept_points) << when;
    for (const auto& [key, bytes] : Images(m)) EXPECT_EQ(bytes, images.at(key)) << when << key;
  };
  check_new("committed");
  // Half rolled forward: the first disk's files in place, nothing removed yet.
  for (size_t i = 0; i < 3; ++i) {
    fs::rename(dir_.File(j.install[i].first), dir_.File(j.install[i].second));
  }
  check_new("half installed");
  auto done = CompleteConsolidation(dir_.path());
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_NE(done->find("completed the consolidation at " + Cp(3)), std::string::npos);
  EXPECT_FALSE(fs::exists(staging));
  check_new("rolled forward");
  auto pending = ReadPendingCheckpoints(dir_.path());
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->domain, "demo");
  EXPECT_EQ(pending->checkpoints, plan->libvirt_checkpoints);
  auto again = CompleteConsolidation(dir_.path());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, "");
}

TEST_F(ConsolidationTest, UncommittedStagingIsDiscarded) {
  SixPoints();
  const auto images = Images(Load());
  fs::create_directories(StagingDir(dir_.path()));
  Touch(std::string(kStagingDirName) + "/vda.full.data.partial");
  Touch(std::string(kStagingDirName) + "/journal.json.tmp");
  EXPECT_EQ(Images(Load()), images);
  auto done = CompleteConsolidation(dir_.path());
  ASSERT_TRUE(done.ok());
  EXPECT_NE(done->find("interrupted before its commit"), std::string::npos);
  EXPECT_FALSE(fs::exists(StagingDir(dir_.path())));
  EXPECT_EQ(Images(Load()), images);
}

// vdc was backed up in the full only (excluded from the incs later): folding point 0 would
// delete its last backup.
TEST_F(ConsolidationTest, RefusesToDeleteTheLastBackupOfADisk) {
  SixPoints();
  Write("vdc.full.data", "vdc", Cp(0), "", 5);
  auto plan = PlanConsolidation(Load(), Cp(3));
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("disk vdc is in no restore point from " + Cp(3) +
                                         " on (its newest backup is at " + Cp(0) +
                                         "): consolidating would delete its last backup"),
            std::string::npos)
      << plan.status().message();
}

// Killed after the journal went but before the (empty) staging directory did: nothing to say.
TEST_F(ConsolidationTest, EmptyStagingDirectoryGoesQuietly) {
  SixPoints();
  fs::create_directories(StagingDir(dir_.path()));
  auto done = CompleteConsolidation(dir_.path());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(*done, "");
  EXPECT_FALSE(fs::exists(StagingDir(dir_.path())));
}

TEST(ConsolidationJournalTest, RoundTripsAndRefusesPathsOutsideTheSaveset) {
  ConsolidationJournal j;
  j.point = Cp(3);
  j.install = {{".backupfs-consolidate/vda.full.data", "vda.full.data"},
               {".backupfs-consolidate/checkpoint.xml", "checkpoints/virtnbdbackup.3.xml"}};
  j.remove = {"vda.inc.virtnbdbackup.1.data"};
  j.domain = "demo";
  j.libvirt_checkpoints = {Cp(0)};
  auto back = DecodeJournal(EncodeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, j);
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{{".backupfs-consolidate/x", "../x"},
                                                        {".backupfs-consolidate/x", "/etc/passwd"},
                                                        {"vda.full.data", "x"},
                                                        {".backupfs-consolidate/../../x", "x"}}) {
    ConsolidationJournal bad = j;
    bad.install = {{from, to}};
    auto r = DecodeJournal(EncodeJournal(bad), "j.json");
    EXPECT_FALSE(r.ok()) << from << " -> " << to;
  }
  ConsolidationJournal bad = j;
  bad.remove = {"../outside"};
  EXPECT_FALSE(DecodeJournal(EncodeJournal(bad), "j.json").ok());
  EXPECT_FALSE(DecodeJournal("{", "j.json").ok());
}

// The full writer: a chain's image written as one file reads back the same, zero extents as
// zero frames, and no data for holes.
TEST_F(ConsolidationTest, FullBackupOfAChainReadsBackTheSame) {
  SixPoints();
  SavesetModel model = Load();
  auto it = std::find_if(model.points.begin(), model.points.end(),
                         [](const RestorePoint& p) { return p.name == Cp(5); });
  ASSERT_NE(it, model.points.end());
  const RestorePoint& p5 = *it;
  auto image = DiskImage::Build(p5.disks[0]);
  StreamMetadata meta = p5.disks[0].files.back()->meta();
  meta.parent_checkpoint = "";
  meta.incremental = false;
  WriterOptions o;
  o.durable = false;
  auto stats = WriteFullBackup(*image, meta, dir_.File("out.data"), o);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  uint64_t data = 0;
  for (const ImageExtent& e : image->extents()) data += e.zero ? 0 : e.length;
  EXPECT_EQ(stats->data_bytes, data);  // only data: zeros and holes cost a frame header
  auto reader = StreamReader::Open(dir_.File("out.data"));
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->meta().data_size, stats->data_bytes);
  EXPECT_EQ((*reader)->meta().virtual_size, kDisk);
  std::vector<uint8_t> want(kDisk), got(kDisk);
  ASSERT_TRUE(image->Read(0, want).ok());
  ASSERT_TRUE((*reader)->Read(0, got).ok());
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace backupfs
