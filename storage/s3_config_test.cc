// Resolving an S3 store's endpoint, region and keys as the AWS CLI does: options, then the
// environment, then the profile in ~/.aws/credentials and ~/.aws/config.
#include "storage/s3_config.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>

#include "storage/open_storage.h"
#include "storage/s3_ini.h"
#include "stream/file.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

constexpr const char* kVars[] = {"AWS_ENDPOINT_URL",
                                 "AWS_ENDPOINT_URL_S3",
                                 "AWS_ACCESS_KEY_ID",
                                 "AWS_SECRET_ACCESS_KEY",
                                 "AWS_SESSION_TOKEN",
                                 "AWS_REGION",
                                 "AWS_DEFAULT_REGION",
                                 "AWS_PROFILE",
                                 "AWS_CONFIG_FILE",
                                 "AWS_SHARED_CREDENTIALS_FILE",
                                 "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                                 "HOME"};

// Clears every variable the resolution reads, points HOME at a scratch directory, and
// restores them all afterwards.
class S3ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kVars) {
      const char* value = std::getenv(v);
      if (value != nullptr) saved_[v] = value;
      unsetenv(v);
    }
    setenv("HOME", home_.path().c_str(), 1);
  }
  void TearDown() override {
    for (const char* v : kVars) {
      const auto it = saved_.find(v);
      if (it == saved_.end()) {
        unsetenv(v);
      } else {
        setenv(v, it->second.c_str(), 1);
      }
    }
  }

  void WriteHomeFile(const std::string& relative, const std::string& text) {
    std::filesystem::create_directories(home_.path() + "/.aws");
    ASSERT_TRUE(WriteTextAtomically(home_.path() + "/" + relative, text).ok());
  }

  testing::ScratchDir home_;
  std::map<std::string, std::string> saved_;
};

TEST_F(S3ConfigTest, OptionsComeFirst) {
  setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
  setenv("AWS_ACCESS_KEY_ID", "envkey", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  setenv("AWS_REGION", "eu-west-1", 1);
  StoreOptions o;
  o.endpoint = "http://127.0.0.1:7480/";
  o.access_key = "key";
  o.secret_key = "secret";
  o.region = "us-west-2";
  o.max_retries = 2;
  auto c = ResolveS3Config(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->endpoint, "http://127.0.0.1:7480");
  EXPECT_EQ(c->access_key, "key");
  EXPECT_EQ(c->secret_key, "secret");
  EXPECT_EQ(c->region, "us-west-2");
  EXPECT_EQ(c->max_retries, 2u);
  EXPECT_TRUE(c->path_style);
  EXPECT_EQ(c->credentials_from, "the store options");
}

TEST_F(S3ConfigTest, EnvironmentServiceEndpointBeforeGlobalAndRegionBeforeDefaultRegion) {
  setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
  setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2", 1);
  setenv("AWS_ACCESS_KEY_ID", "envkey", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  setenv("AWS_SESSION_TOKEN", "token", 1);
  setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
  auto c = ResolveS3Config({});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->endpoint, "http://127.0.0.1:2");
  EXPECT_EQ(c->region, "eu-west-1");
  EXPECT_EQ(c->session_token, "token");
  EXPECT_EQ(c->credentials_from, "the environment");
  setenv("AWS_REGION", "eu-central-1", 1);
  EXPECT_EQ(ResolveS3Config({})->region, "eu-central-1");
}

TEST_F(S3ConfigTest, AwsItselfByDefaultWithVirtualHostedBuckets) {
  setenv("AWS_ACCESS_KEY_ID", "k", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
  auto c = ResolveS3Config({});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->region, "us-east-1");
  EXPECT_EQ(c->endpoint, "https://s3.us-east-1.amazonaws.com");
  EXPECT_FALSE(c->path_style);
  StoreOptions path;
  path.path_style = true;
  EXPECT_TRUE(ResolveS3Config(path)->path_style);
}

TEST_F(S3ConfigTest, ProfileFromSharedFiles) {
  WriteHomeFile(".aws/credentials",
                "# keys\n"
                "[default]\n"
                "aws_access_key_id = defkey\n"
                "aws_secret_access_key = defsecret\n"
                "\n"
                "[ceph]\n"
                "  AWS_ACCESS_KEY_ID=cephkey   ; inline comment\n"
                "aws_secret_access_key: cephsecret\n");
  WriteHomeFile(".aws/config",
                "[default]\n"
                "region = eu-west-3\n"
                "[profile ceph]\n"
                "region = ceph-zone\n"
                "endpoint_url = http://127.0.0.1:7480\n");
  auto def = ResolveS3Config({});
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  EXPECT_EQ(def->access_key, "defkey");
  EXPECT_EQ(def->region, "eu-west-3");
  EXPECT_EQ(def->credentials_from, home_.path() + "/.aws/credentials [default]");

  setenv("AWS_PROFILE", "ceph", 1);
  auto ceph = ResolveS3Config({});
  ASSERT_TRUE(ceph.ok()) << ceph.status().ToString();
  EXPECT_EQ(ceph->access_key, "cephkey");
  EXPECT_EQ(ceph->secret_key, "cephsecret");
  EXPECT_EQ(ceph->region, "ceph-zone");
  EXPECT_EQ(ceph->endpoint, "http://127.0.0.1:7480");
  EXPECT_TRUE(ceph->path_style);
}

TEST_F(S3ConfigTest, ServicesSectionEndpointBeatsTheProfilesAndPathStyleCanBeSet) {
  setenv("AWS_ACCESS_KEY_ID", "k", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
  WriteHomeFile(".aws/config",
                "[default]\n"
                "endpoint_url = http://127.0.0.1:1\n"
                "services = local\n"
                "s3 =\n"
                "  addressing_style = virtual\n"
                "\n"
                "[services local]\n"
                "s3 =\n"
                "  endpoint_url = http://127.0.0.1:7480\n"
                "sqs =\n"
                "  endpoint_url = http://127.0.0.1:9\n");
  auto c = ResolveS3Config({});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->endpoint, "http://127.0.0.1:7480");
  EXPECT_FALSE(c->path_style);
  setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
  EXPECT_EQ(ResolveS3Config({})->endpoint, "https://s3.us-east-1.amazonaws.com");
}

TEST_F(S3ConfigTest, FilesNamedByTheEnvironment) {
  const std::string config = home_.path() + "/elsewhere-config";
  const std::string credentials = home_.path() + "/elsewhere-credentials";
  ASSERT_TRUE(WriteTextAtomically(config, "[profile x]\nregion = r1\n").ok());
  ASSERT_TRUE(
      WriteTextAtomically(credentials, "[x]\naws_access_key_id=a\naws_secret_access_key=b\n").ok());
  setenv("AWS_CONFIG_FILE", config.c_str(), 1);
  setenv("AWS_SHARED_CREDENTIALS_FILE", credentials.c_str(), 1);
  StoreOptions o;
  o.profile = "x";
  auto c = ResolveS3Config(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key, "a");
  EXPECT_EQ(c->region, "r1");
}

TEST_F(S3ConfigTest, AnExplicitProfileIgnoresEnvironmentKeys) {
  setenv("AWS_ACCESS_KEY_ID", "envkey", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  WriteHomeFile(".aws/config", "[profile p]\naws_access_key_id = ck\naws_secret_access_key = cs\n");
  StoreOptions o;
  o.profile = "p";
  auto c = ResolveS3Config(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key, "ck");
  EXPECT_EQ(c->credentials_from, home_.path() + "/.aws/config [profile p]");
}

TEST_F(S3ConfigTest, MissingCredentialsSayWhereItLooked) {
  auto c = ResolveS3Config({});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = c.status().message();
  EXPECT_NE(m.find("no S3 credentials"), std::string::npos) << m;
  EXPECT_NE(m.find("AWS_ACCESS_KEY_ID"), std::string::npos) << m;
  EXPECT_NE(m.find(home_.path() + "/.aws/credentials (no such file)"), std::string::npos) << m;
  EXPECT_NE(m.find(home_.path() + "/.aws/config (no such file)"), std::string::npos) << m;
  EXPECT_NE(m.find("profile 'default'"), std::string::npos) << m;
}

TEST_F(S3ConfigTest, UnsupportedProfileKindsAreNamed) {
  WriteHomeFile(".aws/config", "[default]\nrole_arn = arn:aws:iam::1:role/x\n");
  auto c = ResolveS3Config({});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("role_arn"), std::string::npos) << c.status().message();
}

TEST_F(S3ConfigTest, HalfAKeyPairIsAnError) {
  setenv("AWS_ACCESS_KEY_ID", "k", 1);
  auto c = ResolveS3Config({});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "the environment has an access key but no secret key");
}

TEST_F(S3ConfigTest, MissingNamedProfileIsAnError) {
  WriteHomeFile(".aws/config", "[profile other]\nregion = x\n");
  setenv("AWS_PROFILE", "nope", 1);
  auto c = ResolveS3Config({});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("AWS profile 'nope' is in neither"), std::string::npos)
      << c.status().message();
}

// A mount from /etc/fstab at boot has no HOME: the files are the user's from the password
// database, as for the AWS CLI.
TEST_F(S3ConfigTest, WithoutHomeTheUsersHomeFromThePasswordDatabase) {
  unsetenv("HOME");
  setenv("AWS_PROFILE", "backupfs-no-such-profile", 1);
  const passwd* pw = getpwuid(geteuid());
  ASSERT_NE(pw, nullptr);
  auto c = ResolveS3Config(StoreOptions{});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'backupfs-no-such-profile' is in neither " +
                                      std::string(pw->pw_dir) + "/.aws/config"),
            std::string::npos)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find(std::string(pw->pw_dir) + "/.aws/credentials"),
            std::string::npos)
      << c.status().ToString();
}

TEST_F(S3ConfigTest, EndpointNeedsAScheme) {
  StoreOptions o;
  o.endpoint = "127.0.0.1:7480";
  o.access_key = "k";
  o.secret_key = "s";
  auto c = ResolveS3Config(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'127.0.0.1:7480' does not start with http://"),
            std::string::npos);
}

// What a tool gives the backupfs daemon it starts on a store: the settings it was given, never
// the keys, with commas escaped for fuse_opt and sizes in MiB.
TEST(MountOptions, CarryTheSettingsButNotTheKeys) {
  StoreOptions o;
  EXPECT_EQ(MountOptionsOf(o), "s3_memory=256");
  o.endpoint = "http://127.0.0.1:7480";
  o.region = "eu-west-1";
  o.profile = "backup";
  o.access_key = "AKIDSECRETLESS";
  o.secret_key = "very-secret";
  o.memory_cache_bytes = 64u << 20;
  o.cache_dir = "/var/cache/bfs,1";
  o.cache_dir_bytes = (uint64_t{1} << 30) + 1;  // rounded up to whole MiB
  const std::string m = MountOptionsOf(o);
  EXPECT_EQ(m,
            "s3_memory=64,s3_endpoint=http://127.0.0.1:7480,s3_region=eu-west-1,"
            "s3_profile=backup,s3_cache_dir=/var/cache/bfs\\,1,s3_cache_size=1025");
  EXPECT_EQ(m.find("AKID"), std::string::npos);
  EXPECT_EQ(m.find("very-secret"), std::string::npos);
  o.cache_dir = "relative/cache";
  EXPECT_NE(MountOptionsOf(o).find("s3_cache_dir=" + std::filesystem::current_path().string() +
                                   "/relative/cache,"),
            std::string::npos);
  EXPECT_EQ(EscapeMountOption("a,b\\c"), "a\\,b\\\\c");
}

TEST(S3Endpoint, AwsHostsAreRecognised) {
  EXPECT_TRUE(IsAwsEndpoint("https://s3.eu-west-1.amazonaws.com"));
  EXPECT_TRUE(IsAwsEndpoint("https://s3.cn-north-1.amazonaws.com.cn:443/"));
  EXPECT_FALSE(IsAwsEndpoint("http://127.0.0.1:7480"));
  EXPECT_FALSE(IsAwsEndpoint("https://amazonaws.com.evil.example"));
}

TEST(IniFile, SectionsKeysCommentsAndNesting) {
  const IniFile ini = IniFile::Parse(
      "; a comment\n"
      "# another\n"
      "key outside = ignored\n"
      "[ Sec One ]\r\n"
      "  Key = value with spaces  \r\n"
      "url = http://h:1/p?a=b # trailing comment\n"
      "hash = a#b\n"
      "s3 =\n"
      "    endpoint_url = http://nested\n"
      "    addressing_style = path\n"
      "after = flat\n"
      "  indented = not nested\n"
      "garbage line\n"
      "[broken\n"
      "[two]\n"
      "empty =\n");
  EXPECT_TRUE(ini.HasSection("Sec One"));
  EXPECT_EQ(ini.Get("Sec One", "key"), "value with spaces");
  EXPECT_EQ(ini.Get("Sec One", "url"), "http://h:1/p?a=b");
  EXPECT_EQ(ini.Get("Sec One", "hash"), "a#b");
  EXPECT_EQ(ini.Get("Sec One", "s3.endpoint_url"), "http://nested");
  EXPECT_EQ(ini.Get("Sec One", "s3.addressing_style"), "path");
  EXPECT_EQ(ini.Get("Sec One", "after"), "flat");
  EXPECT_EQ(ini.Get("Sec One", "indented"), "not nested");
  EXPECT_EQ(ini.Get("two", "empty"), "");
  EXPECT_EQ(ini.Get("two", "missing"), std::nullopt);
  EXPECT_EQ(ini.Get("nowhere", "key"), std::nullopt);
  EXPECT_FALSE(ini.HasSection("sec one"));  // section names are as written
}

}  // namespace
}  // namespace backupfs
