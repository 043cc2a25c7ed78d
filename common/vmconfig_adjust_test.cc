#include "common/vmconfig_adjust.h"

#include <gtest/gtest.h>

#include "common/domain_xml.h"

namespace backupfs {
namespace {

constexpr char kDomain[] = R"(<domain type='kvm'>
  <name>web1</name>
  <uuid>6a1f1d1e-0000-4000-8000-000000000001</uuid>
  <os firmware='efi'>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram>
  </os>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source pool='default' volume='web1.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/img/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='pool/web1-data'><host name='10.0.0.1' port='6789'/></source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/img/scratch.qcow2'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/install.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
  </devices>
</domain>)";

VmConfigChanges Changes() {
  VmConfigChanges c;
  c.name = "restore_web1";
  c.disks["vda"] = {"/restore/web1.qcow2", "qcow2", false};
  c.disks["vdb"] = {"/dev/vg0/web1-data", "raw", true};
  c.boot_files["loader"] = "/restore/OVMF_CODE_4M.fd";
  c.boot_files["nvram"] = "/restore/web1_VARS.fd";
  return c;
}

TEST(VmConfigAdjustTest, RestoredDomainPointsAtItsImagesOnly) {
  auto xml = AdjustDomainXml(kDomain, Changes(), "vmconfig.virtnbdbackup.3.xml");
  ASSERT_TRUE(xml.ok()) << xml.status().ToString();
  EXPECT_EQ(xml->find("<uuid>"), std::string::npos);
  EXPECT_NE(xml->find("<name>restore_web1</name>"), std::string::npos);
  auto disks = ParseDomainDisks(*xml, "adjusted");
  ASSERT_TRUE(disks.ok()) << disks.status().ToString();
  ASSERT_EQ(disks->size(), 2u);  // vdc was not restored, the cdrom is gone
  EXPECT_EQ((*disks)[0].target, "vda");
  EXPECT_EQ((*disks)[0].type, "file");
  EXPECT_EQ((*disks)[0].source, "/restore/web1.qcow2");
  EXPECT_EQ((*disks)[0].format, "qcow2");
  EXPECT_EQ((*disks)[1].type, "block");
  EXPECT_EQ((*disks)[1].source, "/dev/vg0/web1-data");
  EXPECT_EQ((*disks)[1].format, "raw");
  EXPECT_EQ(xml->find("backingStore"), std::string::npos);
  EXPECT_EQ(xml->find("pool="), std::string::npos);
  EXPECT_EQ(xml->find("10.0.0.1"), std::string::npos);
  EXPECT_NE(xml->find("cache=\"none\""), std::string::npos) << "other driver settings stay";
}

TEST(VmConfigAdjustTest, BootFilesPointAtTheRestoredCopies) {
  auto xml = AdjustDomainXml(kDomain, Changes(), "x");
  ASSERT_TRUE(xml.ok());
  auto boot = ParseBootFiles(*xml, "adjusted");
  ASSERT_TRUE(boot.ok());
  ASSERT_EQ(boot->size(), 2u);
  EXPECT_EQ((*boot)[0].path, "/restore/OVMF_CODE_4M.fd");
  EXPECT_EQ((*boot)[1].path, "/restore/web1_VARS.fd");
  EXPECT_NE(xml->find("template=\"/usr/share/OVMF/OVMF_VARS_4M.fd\""), std::string::npos);
}

TEST(VmConfigAdjustTest, NamesAndPathsAreEscaped) {
  VmConfigChanges c = Changes();
  c.name = "a<b&c";
  c.disks["vda"].path = "/r/it's \"here\".qcow2";
  auto xml = AdjustDomainXml(kDomain, c, "x");
  ASSERT_TRUE(xml.ok());
  EXPECT_NE(xml->find("<name>a&lt;b&amp;c</name>"), std::string::npos);
  auto disks = ParseDomainDisks(*xml, "adjusted");
  ASSERT_TRUE(disks.ok());
  EXPECT_EQ((*disks)[0].source, "/r/it's \"here\".qcow2");
}

TEST(VmConfigAdjustTest, NotADomainIsRefusedNamingTheFile) {
  for (const char* bad : {"", "<domain>", "<network><name>x</name></network>"}) {
    auto xml = AdjustDomainXml(bad, Changes(), "vmconfig.copy.xml");
    ASSERT_FALSE(xml.ok()) << bad;
    EXPECT_NE(xml.status().message().find("vmconfig.copy.xml"), std::string::npos);
  }
}

TEST(VmConfigAdjustTest, DefaultNameAsVirtnbdrestore) {
  EXPECT_EQ(DefaultRestoredName("web1"), "restore_web1");
  EXPECT_EQ(DefaultRestoredName("restore_web1"), "restore_web1");
}

}  // namespace
// A consolidation's new root checkpoint: the saved XML without <parent>, the rest kept.
TEST(CheckpointXmlTest, ParentRemoved) {
  const std::string xml =
      "<domaincheckpoint><name>virtnbdbackup.3</name><parent><name>virtnbdbackup.2</name>"
      "</parent><creationTime>1700000000</creationTime><disks><disk name='vda' "
      "checkpoint='bitmap' bitmap='virtnbdbackup.3'/></disks></domaincheckpoint>";
  auto out = WithoutCheckpointParent(xml, "checkpoints/virtnbdbackup.3.xml");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->find("<parent>"), std::string::npos) << *out;
  EXPECT_NE(out->find("<name>virtnbdbackup.3</name>"), std::string::npos) << *out;
  EXPECT_NE(out->find("<creationTime>1700000000</creationTime>"), std::string::npos) << *out;
  EXPECT_NE(out->find("bitmap=\"virtnbdbackup.3\""), std::string::npos) << *out;
  auto bad = WithoutCheckpointParent("<domain/>", "x.xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("x.xml"), std::string::npos);
}

}  // namespace backupfs
