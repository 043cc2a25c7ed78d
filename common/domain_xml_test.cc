#include "common/domain_xml.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

constexpr char kTwoDisksAndCdrom[] = R"(<domain type='qemu'>
  <name>vm1</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/vm1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/iso/debian.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' iothread='2'/>
      <source dev='/dev/vg/data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='floppy'><target dev='fda'/></disk>
    <interface type='network'/>
  </devices>
</domain>)";

TEST(DomainXmlTest, ListsDisksAndSkipsCdromAndFloppy) {
  auto disks = ParseDomainDisks(kTwoDisksAndCdrom, "vm1");
  ASSERT_TRUE(disks.ok()) << disks.status().ToString();
  ASSERT_EQ(disks->size(), 2u);
  const DomainDisk& a = (*disks)[0];
  EXPECT_EQ(a.target, "vda");
  EXPECT_EQ(a.source, "/var/lib/libvirt/images/vm1.qcow2");
  EXPECT_EQ(a.format, "qcow2");
  EXPECT_EQ(a.device, "disk");
  EXPECT_EQ(a.type, "file");
  EXPECT_EQ(a.iothread, "");
  const DomainDisk& b = (*disks)[1];
  EXPECT_EQ(b.target, "vdb");
  EXPECT_EQ(b.source, "/dev/vg/data");
  EXPECT_EQ(b.format, "raw");
  EXPECT_EQ(b.type, "block");
  EXPECT_EQ(b.iothread, "2");
}

TEST(DomainXmlTest, ScsiDisksRunInTheirControllersIothread) {
  auto disks = ParseDomainDisks(R"(<domain><devices>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <controller type='scsi' index='1' model='virtio-scsi'><driver iothread='3'/></controller>
    <disk type='file' device='disk'><target dev='sda' bus='scsi'/></disk>
    <disk type='file' device='disk'><target dev='sdb' bus='scsi'/>
      <address type='drive' controller='1' bus='0' target='0' unit='1'/></disk>
    <disk type='file' device='disk'><driver iothread='2'/><target dev='vda' bus='virtio'/></disk>
  </devices></domain>)",
                                "vm1");
  ASSERT_TRUE(disks.ok()) << disks.status().ToString();
  ASSERT_EQ(disks->size(), 3u);
  EXPECT_EQ((*disks)[0].iothread, "");
  EXPECT_EQ((*disks)[1].iothread, "3");
  EXPECT_EQ((*disks)[2].iothread, "2");
}

TEST(DomainXmlTest, DomainWithoutDevicesHasNoDisks) {
  auto disks = ParseDomainDisks("<domain><name>x</name></domain>", "x");
  ASSERT_TRUE(disks.ok());
  EXPECT_TRUE(disks->empty());
}

TEST(DomainXmlTest, DiskWithoutDriverHasEmptyFormat) {
  auto disks = ParseDomainDisks(
      "<domain><devices><disk type='file'><source file='/a'/><target dev='vdc'/></disk>"
      "</devices></domain>",
      "x");
  ASSERT_TRUE(disks.ok());
  ASSERT_EQ(disks->size(), 1u);
  EXPECT_EQ((*disks)[0].format, "");
  EXPECT_EQ((*disks)[0].device, "disk");
}

TEST(DomainXmlTest, DiskWithoutTargetIsAnErrorNamingTheDomain) {
  auto disks = ParseDomainDisks(
      "<domain><devices><disk><source file='/a'/></disk></devices></domain>", "vm7");
  ASSERT_FALSE(disks.ok());
  EXPECT_EQ(disks.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(disks.status().message().find("vm7"), std::string::npos);
}

TEST(DomainXmlTest, MalformedXmlIsAnError) {
  for (const char* bad : {"", "<domain><devices>", "not xml", "<network/>"}) {
    auto disks = ParseDomainDisks(bad, "vm1");
    ASSERT_FALSE(disks.ok()) << bad;
    EXPECT_NE(disks.status().message().find("vm1"), std::string::npos);
  }
}

// libvirt 9's virDomainCheckpointGetXMLDesc(..., VIR_DOMAIN_CHECKPOINT_XML_SIZE), abridged.
constexpr char kCheckpoint[] = R"(<domaincheckpoint>
  <name>virtnbdbackup.1</name>
  <parent><name>virtnbdbackup.0</name></parent>
  <creationTime>1764150000</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='virtnbdbackup.1' size='1048576'/>
    <disk name='vdb' checkpoint='bitmap' bitmap='virtnbdbackup.1' size='65536'/>
    <disk name='sda' checkpoint='no'/>
  </disks>
  <domain type='qemu'><name>vm1</name><description>disk size='999'</description></domain>
</domaincheckpoint>)";

TEST(CheckpointXmlTest, CreationTimeAndChangedBytesOfItsOwnDisks) {
  auto info = ParseCheckpointXml(kCheckpoint, "checkpoint virtnbdbackup.1");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->creation_time, "1764150000");
  EXPECT_EQ(info->parent, "virtnbdbackup.0");
  // Only <disks><disk size=...>: not a size='...' that the embedded domain XML happens to hold.
  EXPECT_EQ(info->changed_bytes, 1048576u + 65536u);
}

TEST(CheckpointXmlTest, TheFirstCheckpointHasNoParent) {
  auto info = ParseCheckpointXml(
      "<domaincheckpoint><name>virtnbdbackup.0</name><creationTime>1</creationTime>"
      "</domaincheckpoint>",
      "checkpoint virtnbdbackup.0");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->parent, "");
}

TEST(CheckpointXmlTest, BadSizeAndWrongDocumentAreErrorsNamingIt) {
  auto bad = ParseCheckpointXml(
      "<domaincheckpoint><disks><disk name='vda' size='12x'/></disks></domaincheckpoint>", "cpt 3");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cpt 3: disk vda has size='12x'"), std::string::npos);
  auto wrong = ParseCheckpointXml("<domain/>", "checkpoints/x.xml");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("checkpoints/x.xml"), std::string::npos);
}

TEST(DomainNameTest, NameOfASavedDomainXml) {
  auto name = ParseDomainName(kTwoDisksAndCdrom, "vmconfig.virtnbdbackup.0.xml");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(*name, "vm1");
  EXPECT_FALSE(ParseDomainName("<domain><name>", "vmconfig.x.xml").ok());
}

TEST(BackupJobXmlTest, SocketAndScratchFiles) {
  auto job = ParseBackupJobXml(R"(<domainbackup mode='pull'>
  <server transport='unix' socket='/run/user.sock'/>
  <disks>
    <disk name='vda' backup='yes' type='file' exportname='vda'>
      <scratch file='/var/tmp/backupfs-capture.Ab12Cd/vda.scratch'/>
    </disk>
    <disk name='vdb' backup='no'/>
  </disks>
</domainbackup>)",
                               "job");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->socket, "/run/user.sock");
  EXPECT_EQ(job->scratch_files,
            std::vector<std::string>{"/var/tmp/backupfs-capture.Ab12Cd/vda.scratch"});
}

TEST(BackupJobXmlTest, PushModeJobHasNoSocket) {
  auto job = ParseBackupJobXml(R"(<domainbackup mode='push'><disks>
    <disk name='vda' backup='yes' type='file'><target file='/backup/vda.img'/></disk>
  </disks></domainbackup>)",
                               "job");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->socket, "");
  EXPECT_TRUE(job->scratch_files.empty());
}

}  // namespace
}  // namespace backupfs
