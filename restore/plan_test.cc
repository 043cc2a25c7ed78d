#include "restore/plan.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

using testing::ScratchDir;

std::string Cp(int n) { return "virtnbdbackup." + std::to_string(n); }

std::string DomainXml(const std::vector<std::pair<std::string, std::string>>& disks) {
  std::string xml =
      "<domain type='qemu'><name>web1</name><os><type>hvm</type>"
      "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
      "</os><devices>";
  for (const auto& [target, source] : disks) {
    xml += "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='" +
           source + "'/><target dev='" + target + "'/></disk>";
  }
  return xml + "</devices></domain>";
}

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir(in_.File("out").c_str(), 0755), 0);
    options_.input = in_.path();
    options_.output = in_.File("out");
  }
  // A data file of `disk` for checkpoint `cp`: the full backup when cp == first.
  void Data(const std::string& disk, int cp, int first = 0) {
    StreamMetadata m;
    m.virtual_size = 1u << 20;
    m.data_size = 4096;
    m.disk_name = disk;
    m.disk_format = "qcow2";
    m.checkpoint_name = Cp(cp);
    m.parent_checkpoint = cp == first ? "" : Cp(cp - 1);
    m.incremental = cp != first;
    WriterOptions o;
    o.durable = false;
    const std::string name = disk + (cp == first ? ".full.data" : ".inc." + Cp(cp) + ".data");
    auto w = StreamWriter::Create(in_.File(name), m, o);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->AddData(4096 * cp, testing::RandomBytes(4096, cp)).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  void Text(const std::string& name, const std::string& text) {
    testing::WriteFileBytes(in_.File(name), std::vector<uint8_t>(text.begin(), text.end()));
  }
  // vda (web1.qcow2) at points 0..2; vdb (data.qcow2) added at point 1.
  void TwoDiskSaveset() {
    for (int cp : {0, 1, 2}) Data("vda", cp);
    Data("vdb", 1, 1);  // the new disk's full backup, taken with checkpoint 1
    Data("vdb", 2, 1);
    Text("vmconfig." + Cp(0) + ".xml", DomainXml({{"vda", "/img/web1.qcow2"}}));
    for (int cp : {1, 2}) {
      Text("vmconfig." + Cp(cp) + ".xml",
           DomainXml({{"vda", "/img/web1.qcow2"}, {"vdb", "/img/data.qcow2"}}));
    }
    Text("vda." + Cp(0) + ".qcow.json", R"({"cluster-size": 65536})");
    Text("OVMF_CODE.fd." + Cp(0), "firmware");
  }
  Result<RestorePlan> Plan() {
    auto model = LoadSaveset(in_.path(), {});
    if (!model.ok()) return model.status();
    return PlanRestore(*model, options_);
  }

  ScratchDir in_;
  RestoreOptions options_;
};

TEST_F(PlanTest, NewestPointWithImagesNamedAfterTheirSources) {
  TwoDiskSaveset();
  auto plan = Plan();
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->point, Cp(2));
  ASSERT_EQ(plan->disks.size(), 2u);
  EXPECT_EQ(plan->disks[0].target, options_.output + "/web1.qcow2");
  EXPECT_EQ(plan->disks[0].chain.files.size(), 3u);
  EXPECT_EQ(plan->disks[0].format, "qcow2");
  EXPECT_EQ(plan->disks[0].qcow_json, "vda." + Cp(0) + ".qcow.json");  // a file of the saveset
  EXPECT_EQ(plan->disks[1].target, options_.output + "/data.qcow2");
  EXPECT_EQ(plan->vmconfig_path, in_.File("vmconfig." + Cp(2) + ".xml"));
  EXPECT_EQ(plan->config_target, options_.output + "/vmconfig.xml");
  ASSERT_EQ(plan->boot_files.size(), 1u);
  EXPECT_EQ(plan->boot_files[0].saved, "OVMF_CODE.fd." + Cp(0));
  EXPECT_EQ(plan->saveset->Describe(plan->boot_files[0].saved), in_.File("OVMF_CODE.fd." + Cp(0)));
  EXPECT_EQ(plan->boot_files[0].target, options_.output + "/OVMF_CODE.fd");
}

TEST_F(PlanTest, PointBeforeADiskWasAddedRestoresTheOthers) {
  TwoDiskSaveset();
  options_.until = Cp(0);
  auto plan = Plan();
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->disks.size(), 1u);
  EXPECT_EQ(plan->disks[0].disk, "vda");
  EXPECT_EQ(plan->disks[0].chain.files.size(), 1u);
  options_.disk = "vdb";
  auto one = Plan();
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.status().message().find("vdb"), std::string::npos) << one.status().ToString();
  EXPECT_NE(one.status().message().find(Cp(0)), std::string::npos) << one.status().ToString();
}

TEST_F(PlanTest, UnknownPointListsTheAvailableOnes) {
  TwoDiskSaveset();
  options_.until = "virtnbdbackup.9";
  auto plan = Plan();
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), StatusCode::kNotFound);
  for (const std::string& s : {std::string("virtnbdbackup.9"), Cp(0), Cp(1), Cp(2)}) {
    EXPECT_NE(plan.status().message().find(s), std::string::npos) << plan.status().ToString();
  }
}

TEST_F(PlanTest, ExistingFilesAreRefusedUnlessForced) {
  TwoDiskSaveset();
  for (const char* name : {"web1.qcow2", "web1.qcow2.partial", "vmconfig.xml"}) {
    SCOPED_TRACE(name);
    Text(std::string("out/") + name, "keep me");
    options_.force = false;
    auto plan = Plan();
    ASSERT_FALSE(plan.ok());
    EXPECT_NE(plan.status().message().find(options_.output + "/" + name), std::string::npos)
        << plan.status().ToString();
    options_.force = true;
    EXPECT_TRUE(Plan().ok());
    ASSERT_EQ(unlink(in_.File(std::string("out/") + name).c_str()), 0);
  }
}

// A remote output directory: only Exists is asked; the rest is never called by the planner.
class FakeRemoteHost final : public Host {
 public:
  bool remote() const override { return true; }
  const std::string& name() const override { return name_; }
  const std::string& address() const override { return address_; }
  Result<CommandResult> Run(const std::vector<std::string>&) override { return Unused(); }
  Result<std::unique_ptr<HostProcess>> Spawn(const std::vector<std::string>&) override {
    return Unused();
  }
  Result<std::string> ReadFile(const std::string&) override { return Unused(); }
  Status FetchFile(const std::string&, const std::string&) override { return Unused(); }
  Status PutFile(const std::string&, const std::string&, mode_t) override { return Unused(); }
  Status WriteFile(const std::string&, const std::string&, mode_t) override { return Unused(); }
  Result<bool> Exists(const std::string& path) override {
    asked.insert(path);
    return existing.count(path) > 0;
  }
  Status MakeDirs(const std::string&, mode_t) override { return Unused(); }
  Status Rename(const std::string&, const std::string&) override { return Unused(); }
  Status Remove(const std::string&) override { return Unused(); }
  Status Sync(const std::string&) override { return Unused(); }

  std::set<std::string> existing, asked;

 private:
  static Status Unused() { return Status::IOError("not used by the planner"); }
  std::string name_ = "host 192.0.2.7", address_ = "192.0.2.7";
};

TEST_F(PlanTest, RemoteOutputIsCheckedOnTheHostNotHere) {
  TwoDiskSaveset();
  options_.output = "/srv/restore";  // exists on the host only
  FakeRemoteHost host;
  auto model = LoadSaveset(in_.path(), {});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto plan = PlanRestore(*model, options_, &host);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->disks[0].target, "/srv/restore/web1.qcow2");
  EXPECT_EQ(plan->config_target, "/srv/restore/vmconfig.xml");
  EXPECT_EQ(host.asked.count("/srv/restore/web1.qcow2.partial"), 1u);

  host.existing.insert("/srv/restore/data.qcow2");
  auto refused = PlanRestore(*model, options_, &host);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(),
            "host 192.0.2.7: /srv/restore/data.qcow2 exists; --force replaces it");
  options_.force = true;
  EXPECT_TRUE(PlanRestore(*model, options_, &host).ok());
}

TEST_F(PlanTest, PlantedSymlinkIsRefusedEvenWhenItDangles) {
  TwoDiskSaveset();
  ASSERT_EQ(symlink("/nonexistent/elsewhere", in_.File("out/web1.qcow2").c_str()), 0);
  auto plan = Plan();
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("web1.qcow2"), std::string::npos);
}

TEST_F(PlanTest, NamesThatWouldLeaveTheOutputDirectoryAreRefused) {
  for (int cp : {0}) Data("vda", cp);
  Text("vmconfig." + Cp(0) + ".xml", DomainXml({{"vda", "/img/.."}}));
  auto plan = Plan();
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("'..'"), std::string::npos) << plan.status().ToString();
}

TEST_F(PlanTest, TwoDisksWithOneBasenameGetDistinctImages) {
  Data("vda", 0);
  Data("vdb", 0);
  Text("vmconfig." + Cp(0) + ".xml",
       DomainXml({{"vda", "/a/disk.qcow2"}, {"vdb", "/b/disk.qcow2"}}));
  auto plan = Plan();
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->disks.size(), 2u);
  EXPECT_NE(plan->disks[0].target, plan->disks[1].target);
}

// Writing into a real device is the integration test's (a loop device); here, the refusals.
TEST_F(PlanTest, DeviceOptionIsCheckedBeforeAnythingIsWritten) {
  TwoDiskSaveset();
  options_.devices["vdb"] = "/dev/null";  // a character device
  auto plan = Plan();
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("disk vdb: /dev/null is not a block device"),
            std::string::npos)
      << plan.status().ToString();
  options_.devices.clear();
  options_.devices["vdz"] = "/dev/null";
  plan = Plan();
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("restores no disk vdz"), std::string::npos)
      << plan.status().ToString();
}

TEST_F(PlanTest, DamagedSavesetNeedsAnExplicitPoint) {
  TwoDiskSaveset();
  ASSERT_EQ(unlink(in_.File("vdb.inc." + Cp(2) + ".data").c_str()), 0);
  testing::WriteFileBytes(in_.File("vdb.inc." + Cp(2) + ".data"), {'j', 'u', 'n', 'k'});
  auto newest = Plan();
  ASSERT_FALSE(newest.ok()) << "a damaged newest file must not turn into an older point";
  EXPECT_NE(newest.status().message().find("vdb.inc." + Cp(2) + ".data"), std::string::npos)
      << newest.status().ToString();
  options_.until = Cp(2);
  auto broken = Plan();
  ASSERT_FALSE(broken.ok()) << "vdb is listed at this point: leaving it out is wrong";
  EXPECT_NE(broken.status().message().find("disk vdb cannot be restored at " + Cp(2)),
            std::string::npos)
      << broken.status().ToString();
  options_.until = Cp(1);
  auto earlier = Plan();
  ASSERT_TRUE(earlier.ok()) << earlier.status().ToString();
  EXPECT_EQ(earlier->disks.size(), 2u);
}

TEST_F(PlanTest, ConfigAdjustmentNeedsTheDomainXml) {
  Data("vda", 0);
  options_.adjust_config = true;
  auto plan = Plan();
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("vmconfig"), std::string::npos);
  options_.adjust_config = false;
  auto bare = Plan();
  ASSERT_TRUE(bare.ok()) << bare.status().ToString();
  EXPECT_EQ(bare->disks[0].target, options_.output + "/vda");  // named after the disk
}

TEST_F(PlanTest, SequenceMustFollowParentLinks) {
  for (int cp : {0, 1, 2}) Data("vda", cp);
  options_.sequence = {"vda.full.data", "vda.inc." + Cp(2) + ".data"};
  auto gap = ChainFromSequence(options_, {});
  ASSERT_FALSE(gap.ok());
  EXPECT_NE(gap.status().message().find(Cp(1)), std::string::npos) << gap.status().ToString();
  options_.sequence = {"vda.inc." + Cp(1) + ".data"};
  EXPECT_FALSE(ChainFromSequence(options_, {}).ok());
  options_.sequence = {"vda.full.data", "vda.inc." + Cp(1) + ".data"};
  auto chain = ChainFromSequence(options_, {});
  ASSERT_TRUE(chain.ok()) << chain.status().ToString();
  auto plan = PlanSequence(std::move(chain).value(), options_);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->point, Cp(1));
  EXPECT_EQ(plan->disks[0].target, options_.output + "/vda");
  options_.sequence = {"../x.data"};
  EXPECT_FALSE(ChainFromSequence(options_, {}).ok());
}

}  // namespace
}  // namespace backupfs
