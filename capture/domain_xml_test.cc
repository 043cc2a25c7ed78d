#include "capture/domain_xml.h"

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

}  // namespace
}  // namespace backupfs
