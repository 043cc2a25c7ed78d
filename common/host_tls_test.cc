#include "common/host_tls.h"

#include <gtest/gtest.h>

namespace backupfs {
namespace {

TEST(ParseHostTlsTest, LibvirtDefaultsWhenNothingIsSet) {
  const HostTls tls = ParseHostTls("#backup_tls_x509_cert_dir = \"/commented/out\"\n");
  EXPECT_EQ(tls.dir, "/etc/pki/qemu");
  EXPECT_TRUE(tls.verify);
}

TEST(ParseHostTlsTest, BackupSettingsWinOverTheDefaultOnes) {
  const HostTls tls = ParseHostTls(
      "backup_tls_x509_cert_dir = \"/etc/pki/backup\"\n"
      "default_tls_x509_cert_dir = \"/etc/pki/default\"\n"
      "default_tls_x509_verify = 1\n"
      "backup_tls_x509_verify=0\r\n");
  EXPECT_EQ(tls.dir, "/etc/pki/backup");
  EXPECT_FALSE(tls.verify);
}

TEST(ParseHostTlsTest, DefaultSettingsApplyWhenNoBackupOnesAreSet) {
  const HostTls tls = ParseHostTls("default_tls_x509_cert_dir = \"/srv/pki\"\n");
  EXPECT_EQ(tls.dir, "/srv/pki");
  EXPECT_TRUE(tls.verify);
}

TEST(ParseHostTlsTest, ALongerKeyWithTheSamePrefixIsNotTaken) {
  const HostTls tls = ParseHostTls("backup_tls_x509_cert_dir_extra = \"/wrong\"\n");
  EXPECT_EQ(tls.dir, "/etc/pki/qemu");
}

}  // namespace
}  // namespace backupfs
