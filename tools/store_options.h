// The options every tool takes for a saveset in an S3 bucket (`s3://bucket/prefix` wherever a
// saveset directory is accepted). They override what the environment and ~/.aws say.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "storage/open_storage.h"

namespace backupfs {

inline void AddStoreOptions(CLI::App& app, StoreOptions& o, const std::string& group) {
  app.add_option("--s3-endpoint", o.endpoint,
                 "S3 endpoint URL (default: AWS_ENDPOINT_URL, then the profile's endpoint_url)")
      ->group(group);
  app.add_option("--s3-region", o.region,
                 "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1)")
      ->group(group);
  app.add_option("--s3-profile", o.profile,
                 "profile of ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE)")
      ->group(group);
  app.add_option("--s3-cache-dir", o.cache_dir,
                 "keep fetched ranges and built indexes here across runs")
      ->group(group);
  app.add_option("--s3-cache-size", o.cache_dir_bytes,
                 "bytes --s3-cache-dir may hold (default: 4 GiB)")
      ->group(group);
}

}  // namespace backupfs
