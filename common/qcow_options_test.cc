#include "common/qcow_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace backupfs {
namespace {

using ::testing::ElementsAre;

// What qemu-img 7.2 prints for `qemu-img create -f qcow2 -o cluster_size=131072,lazy_refcounts=on`.
constexpr char kInfo[] = R"({
    "virtual-size": 1073741824, "filename": "/var/lib/libvirt/images/vm.qcow2",
    "cluster-size": 131072, "format": "qcow2", "actual-size": 397312,
    "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib",
        "lazy-refcounts": true, "refcount-bits": 16, "corrupt": false, "extended-l2": false}},
    "dirty-flag": false})";

TEST(QcowOptionsTest, CarriesTheBackedUpImagesSettings) {
  auto o = ParseQcowCreateOptions(kInfo, "vda.virtnbdbackup.0.qcow.json");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_THAT(o->options, ElementsAre("cluster_size=131072", "compat=1.1", "compression_type=zlib",
                                      "refcount_bits=16", "lazy_refcounts=on"));
  EXPECT_TRUE(o->notes.empty());
}

TEST(QcowOptionsTest, OldCompatImageGetsNoNewerOptions) {
  auto o = ParseQcowCreateOptions(
      R"({"cluster-size": 65536, "format-specific": {"data": {"compat": "0.10",
          "refcount-bits": 16}}})",
      "x");
  ASSERT_TRUE(o.ok());
  EXPECT_THAT(o->options, ElementsAre("cluster_size=65536", "compat=0.10", "refcount_bits=16"));
}

TEST(QcowOptionsTest, ExternalDataFileIsNotedNotCarried) {
  auto o = ParseQcowCreateOptions(
      R"({"format-specific": {"data": {"compat": "1.1", "data-file": "/d/vm.raw"}}})", "x.json");
  ASSERT_TRUE(o.ok());
  EXPECT_THAT(o->options, ElementsAre("compat=1.1"));
  ASSERT_EQ(o->notes.size(), 1u);
  EXPECT_NE(o->notes[0].find("/d/vm.raw"), std::string::npos);
}

TEST(QcowOptionsTest, WrongTypesAreIgnoredAndGarbageRefused) {
  auto o = ParseQcowCreateOptions(R"({"cluster-size": "big", "format-specific": 3})", "x");
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->options.empty());
  auto bad = ParseQcowCreateOptions("qemu-img: Could not open", "vda.0.qcow.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("vda.0.qcow.json"), std::string::npos);
  EXPECT_FALSE(ParseQcowCreateOptions("[1,2]", "x").ok());
}

}  // namespace
}  // namespace backupfs
