// Where an S3 store is and who we are to it, resolved from StoreOptions and the places current
// AWS SDKs and CLIs read (in this order, the first that has a value wins):
//
//   endpoint     options.endpoint, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's
//                `services` section (`s3 = / endpoint_url = ...`), the profile's endpoint_url
//                (none of the configured ones when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true),
//                else AWS's regional endpoint https://s3.<region>.amazonaws.com
//   region       options.region, AWS_REGION, AWS_DEFAULT_REGION, the profile's region,
//                else us-east-1
//   credentials  options.access_key + secret_key; else AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
//                (+ AWS_SESSION_TOKEN), unless a profile is named in the options (as an explicit
//                --profile does in the CLI); else the profile in the credentials file, then in
//                the config file
//   profile      options.profile, AWS_PROFILE, else "default": `[name]` in the credentials file
//                (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials), `[profile name]` (or
//                `[default]`) in the config file (AWS_CONFIG_FILE, ~/.aws/config)
//   path style   options.path_style, the profile's `s3 = / addressing_style = path|virtual`,
//                else path style for any endpoint that is not AWS's own
//
// Only static keys are read: credential_process, SSO and assume-role profiles are not.
#pragma once

#include <string>
#include <string_view>

#include "storage/open_storage.h"
#include "stream/status.h"

namespace backupfs {

struct S3Config {
  std::string endpoint;  // "http://127.0.0.1:7480": scheme, host, port; no trailing "/"
  std::string region;
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // empty unless temporary credentials
  bool path_style = true;
  unsigned max_retries = 5;
  std::string credentials_from;  // for messages: "the environment", "/root/.aws/credentials [x]"
};

// The configuration for `options`, or InvalidArgument saying what is missing or malformed and
// every place that was looked in (a missing named profile, credentials found nowhere, half a
// key pair, an endpoint without http:// or https://).
Result<S3Config> ResolveS3Config(const StoreOptions& options);

// Whether `endpoint` is one of AWS's own (a host under amazonaws.com), where buckets are
// addressed as virtual hosts by default.
bool IsAwsEndpoint(std::string_view endpoint);

}  // namespace backupfs
