#include "storage/s3_config.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <vector>

#include "storage/s3_ini.h"
#include "stream/file.h"

namespace backupfs {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::string FirstSet(std::initializer_list<std::string> values) {
  for (const std::string& v : values) {
    if (!v.empty()) return v;
  }
  return "";
}

// HOME, else the user's home from the password database, as the AWS CLI's expanduser does:
// a service may start without HOME (a systemd unit without User=), and ~/.aws is still where
// its user keeps the keys.
std::string HomeDir() {
  std::string home = Env("HOME");
  if (!home.empty()) return home;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(geteuid(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr &&
      found->pw_dir != nullptr) {
    return found->pw_dir;
  }
  return "";
}

std::string HomeFile(const char* env_name, const char* relative) {
  std::string path = Env(env_name);
  if (path.empty()) return HomeDir() + "/" + relative;
  if (path.starts_with("~/")) return HomeDir() + path.substr(1);
  return path;
}

// One of the two shared files: its path, and its contents when it exists.
struct SharedFile {
  std::string path;
  bool exists = false;
  IniFile ini;
};

Result<SharedFile> LoadSharedFile(std::string path) {
  SharedFile f;
  f.path = std::move(path);
  std::error_code ec;
  f.exists = std::filesystem::is_regular_file(f.path, ec);
  if (!f.exists) return f;
  BFS_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(f.path));
  f.ini = IniFile::Parse(text);
  return f;
}

// The profile's settings in the config and credentials files.
class Profile {
 public:
  static Result<Profile> Load(const StoreOptions& options) {
    Profile p;
    p.explicit_ = !options.profile.empty() || !Env("AWS_PROFILE").empty();
    p.name_ = FirstSet({options.profile, Env("AWS_PROFILE"), "default"});
    BFS_ASSIGN_OR_RETURN(p.config_, LoadSharedFile(HomeFile("AWS_CONFIG_FILE", ".aws/config")));
    BFS_ASSIGN_OR_RETURN(p.credentials_, LoadSharedFile(HomeFile("AWS_SHARED_CREDENTIALS_FILE",
                                                                 ".aws/credentials")));
    if (p.explicit_ && p.ConfigSection().empty() && !p.credentials_.ini.HasSection(p.name_)) {
      return Status::InvalidArgument("AWS profile '" + p.name_ + "' is in neither " +
                                     p.Described(p.config_) + " nor " +
                                     p.Described(p.credentials_));
    }
    return p;
  }

  const std::string& name() const { return name_; }
  const SharedFile& config() const { return config_; }
  const SharedFile& credentials() const { return credentials_; }

  // `[profile name]`, or `[default]` for the default profile; "" when the file has neither.
  std::string ConfigSection() const {
    if (config_.ini.HasSection("profile " + name_)) return "profile " + name_;
    if (name_ == "default" && config_.ini.HasSection("default")) return "default";
    return "";
  }
  std::string Config(const std::string& key) const {
    const std::string section = ConfigSection();
    if (section.empty()) return "";
    return config_.ini.Get(section, key).value_or("");
  }
  std::string Credentials(const std::string& key) const {
    return credentials_.ini.Get(name_, key).value_or("");
  }
  // `services = NAME` in the profile names a `[services NAME]` section with per-service keys.
  std::string ServiceConfig(const std::string& key) const {
    const std::string services = Config("services");
    if (services.empty()) return "";
    return config_.ini.Get("services " + services, "s3." + key).value_or("");
  }

  static std::string Described(const SharedFile& f) {
    return f.path + (f.exists ? "" : " (no such file)");
  }

 private:
  std::string name_;
  bool explicit_ = false;
  SharedFile config_;
  SharedFile credentials_;
};

Result<std::string> ResolveEndpoint(const StoreOptions& options, const Profile& profile,
                                    const std::string& region) {
  std::string endpoint = options.endpoint;
  const bool ignore_configured = Env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") == "true" ||
                                 profile.Config("ignore_configured_endpoint_urls") == "true";
  if (endpoint.empty() && !ignore_configured) {
    endpoint = FirstSet({Env("AWS_ENDPOINT_URL_S3"), Env("AWS_ENDPOINT_URL"),
                         profile.ServiceConfig("endpoint_url"), profile.Config("endpoint_url")});
  }
  if (endpoint.empty()) return "https://s3." + region + ".amazonaws.com";
  if (!endpoint.starts_with("http://") && !endpoint.starts_with("https://")) {
    return Status::InvalidArgument("S3 endpoint '" + endpoint +
                                   "' does not start with http:// or https://");
  }
  while (endpoint.ends_with("/")) endpoint.pop_back();
  return endpoint;
}

// Both halves of a key pair or neither: half of one is a mistake worth naming.
Result<bool> TakeKeyPair(const std::string& id, const std::string& secret, const std::string& token,
                         const std::string& where, S3Config* config) {
  if (id.empty() && secret.empty()) return false;
  if (id.empty() || secret.empty()) {
    return Status::InvalidArgument(
        where + " has " +
        (id.empty() ? "a secret key but no access key" : "an access key but no secret key"));
  }
  config->access_key = id;
  config->secret_key = secret;
  config->session_token = token;
  config->credentials_from = where;
  return true;
}

// Profiles that get their keys some other way, which is not read here.
std::string UnsupportedSource(const Profile& profile) {
  for (const char* key : {"credential_process", "sso_session", "sso_start_url", "role_arn",
                          "web_identity_token_file"}) {
    if (!profile.Config(key).empty() || !profile.Credentials(key).empty()) {
      return "; profile '" + profile.name() + "' has " + key +
             ", which is not supported: give it static keys";
    }
  }
  return "";
}

Status ResolveCredentials(const StoreOptions& options, const Profile& profile, S3Config* config) {
  BFS_ASSIGN_OR_RETURN(bool found, TakeKeyPair(options.access_key, options.secret_key, "",
                                               "the store options", config));
  if (found) return Status::Ok();
  if (options.profile.empty()) {
    BFS_ASSIGN_OR_RETURN(found, TakeKeyPair(Env("AWS_ACCESS_KEY_ID"), Env("AWS_SECRET_ACCESS_KEY"),
                                            Env("AWS_SESSION_TOKEN"), "the environment", config));
    if (found) return Status::Ok();
  }
  const std::string in_credentials = profile.credentials().path + " [" + profile.name() + "]";
  BFS_ASSIGN_OR_RETURN(
      found, TakeKeyPair(profile.Credentials("aws_access_key_id"),
                         profile.Credentials("aws_secret_access_key"),
                         profile.Credentials("aws_session_token"), in_credentials, config));
  if (found) return Status::Ok();
  const std::string in_config = profile.config().path + " [" + profile.ConfigSection() + "]";
  BFS_ASSIGN_OR_RETURN(found, TakeKeyPair(profile.Config("aws_access_key_id"),
                                          profile.Config("aws_secret_access_key"),
                                          profile.Config("aws_session_token"), in_config, config));
  if (found) return Status::Ok();
  return Status::InvalidArgument(
      "no S3 credentials found: looked in the store options, " +
      std::string(options.profile.empty() ? "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, " : "") +
      "profile '" + profile.name() + "' in " + Profile::Described(profile.credentials()) + " and " +
      Profile::Described(profile.config()) + UnsupportedSource(profile));
}

bool ResolvePathStyle(const StoreOptions& options, const Profile& profile,
                      const std::string& endpoint) {
  if (options.path_style.has_value()) return *options.path_style;
  const std::string style = profile.Config("s3.addressing_style");
  if (style == "path") return true;
  if (style == "virtual") return false;
  return !IsAwsEndpoint(endpoint);
}

}  // namespace

bool IsAwsEndpoint(std::string_view endpoint) {
  const size_t scheme = endpoint.find("://");
  std::string_view host = scheme == std::string_view::npos ? endpoint : endpoint.substr(scheme + 3);
  host = host.substr(0, host.find_first_of(":/"));
  return host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
}

Result<S3Config> ResolveS3Config(const StoreOptions& options) {
  BFS_ASSIGN_OR_RETURN(Profile profile, Profile::Load(options));
  S3Config config;
  config.region = FirstSet(
      {options.region, Env("AWS_REGION"), Env("AWS_DEFAULT_REGION"), profile.Config("region")});
  if (config.region.empty()) config.region = "us-east-1";
  BFS_ASSIGN_OR_RETURN(config.endpoint, ResolveEndpoint(options, profile, config.region));
  BFS_RETURN_IF_ERROR(ResolveCredentials(options, profile, &config));
  config.path_style = ResolvePathStyle(options, profile, config.endpoint);
  config.max_retries = options.max_retries;
  return config;
}

}  // namespace backupfs
