#include "restore/instant_record.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

InstantRecord Sample() {
  InstantRecord r;
  r.saveset = "/backup/web & co";  // characters XML must escape
  r.point = "virtnbdbackup.3";
  r.workdir = "/var/tmp/w'1";
  r.mount = "/var/tmp/w'1/backupfs-instant.mnt";
  r.disks = {{"vda", "/var/tmp/w'1/vda.qcow2", "/m/virtnbdbackup.3/vda.raw"},
             {"vdb", "/var/tmp/w'1/vdb.qcow2", "/m/virtnbdbackup.3/vdb.raw"}};
  r.files = {"/var/tmp/w'1/vmconfig.xml", "/var/tmp/w'1/OVMF_VARS.fd"};
  return r;
}

TEST(InstantRecordTest, RoundTrips) {
  InstantRecord r = Sample();
  auto back = ParseInstantRecord(InstantRecordXml(r), "domain x");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, r);

  r.migrate_to = "/images";
  r.migration = "failed: disk vda: no space <left>";
  back = ParseInstantRecord(InstantRecordXml(r), "domain x");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, r);
}

TEST(InstantRecordTest, RoundTripsAStoresMountOptions) {
  InstantRecord r = Sample();
  r.saveset = "s3://backups/web";
  r.store_options = "s3_memory=256,s3_endpoint=http://127.0.0.1:7480,s3_cache_dir=/c/a\\,b";
  auto back = ParseInstantRecord(InstantRecordXml(r), "domain x");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, r);
  // A directory's record has none, and one written before there were any reads as none.
  EXPECT_EQ(InstantRecordXml(Sample()).find("store-options"), std::string::npos);
}

TEST(InstantRecordTest, RoundTripsARemoteRecord) {
  InstantRecord r = Sample();
  r.served = InstantServed{"backup1", "/var/tmp/backupfs-served.x", "127.0.0.1", true, "/pki"};
  r.disks[0].backing = "nbd://127.0.0.1:10809/vda";
  r.disks[0].nbd_port = 10809;
  r.disks[0].nbdkit_pid = 4242;
  r.disks[1].nbd_port = 10810;  // not started yet: pid 0
  auto back = ParseInstantRecord(InstantRecordXml(r), "domain x");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, r);
  EXPECT_TRUE(back->remote());
  EXPECT_FALSE(Sample().remote());
}

TEST(InstantRecordTest, RefusesAPortThatIsNoNumber) {
  const std::string xml =
      "<instant saveset='/s' point='p' workdir='/w' mount='/m'><disk target='vda' "
      "overlay='/w/o' backing='nbd://a:1/vda' nbd-port='10x' nbdkit-pid='1'/></instant>";
  auto r = ParseInstantRecord(xml, "domain x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "domain x: backupfs metadata: nbd-port='10x' is not a number");
}

TEST(InstantRecordTest, ReadsWhatLibvirtReturns) {
  // libvirt hands the element back with its namespace declared on it.
  const std::string xml =
      "<backupfs:instant xmlns:backupfs=\"urn:backupfs:instant:1\" saveset=\"/s\" point=\"p\" "
      "workdir=\"/w\" mount=\"/w/m\"><backupfs:disk target=\"vda\" overlay=\"/w/o\" "
      "backing=\"/w/m/p/vda.raw\"/></backupfs:instant>";
  auto r = ParseInstantRecord(xml, "domain x");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->point, "p");
  ASSERT_EQ(r->disks.size(), 1u);
  EXPECT_EQ(r->disks[0].backing, "/w/m/p/vda.raw");
}

TEST(InstantRecordTest, RefusesWhatIsNotARecord) {
  for (const std::string& xml :
       {std::string("<instant"), std::string("<other/>"),
        std::string("<instant saveset='/s' point='p' workdir='/w'/>"),
        std::string("<instant saveset='/s' point='p' workdir='/w' mount='/m'/>"),
        std::string("<instant saveset='/s' point='p' workdir='/w' mount='/m'><disk target='vda'/>"
                    "</instant>")}) {
    auto r = ParseInstantRecord(xml, "domain web");
    ASSERT_FALSE(r.ok()) << xml;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << xml;
    EXPECT_NE(r.status().message().find("domain web"), std::string::npos) << xml;
  }
}

}  // namespace
}  // namespace backupfs
