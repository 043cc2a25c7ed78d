// Opens a saveset's storage from the address a user gives: a local directory, or
// `s3://bucket/prefix` for an S3-compatible store (Ceph RGW, MinIO, AWS).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

// How to reach an S3 store. Empty fields come from the usual places, as current AWS SDKs and
// CLIs read them: AWS_ENDPOINT_URL (AWS_ENDPOINT_URL_S3 first), AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE with
// ~/.aws/config and ~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE).
struct StoreOptions {
  std::string endpoint;  // "http://127.0.0.1:7480"; AWS's regional endpoint when none is found
  std::string region;    // "us-east-1" when none is found
  std::string profile;
  std::string access_key;
  std::string secret_key;
  // Path-style addressing (http://host/bucket/key), which Ceph and MinIO need; the default
  // for any endpoint that is not AWS's own.
  std::optional<bool> path_style;
  // Reads: memory kept for fetched ranges, and an optional local directory (with its own size
  // bound) that keeps fetched ranges and indexes built by scanning across runs.
  uint64_t memory_cache_bytes = 256u << 20;
  std::string cache_dir;
  uint64_t cache_dir_bytes = uint64_t{4} << 30;
  unsigned max_retries = 5;  // per request, with exponential backoff
};

// Whether `address` names a store (`s3://...`) rather than a local directory.
bool IsStoreAddress(std::string_view address);

// A local directory for a path; an S3 prefix for `s3://bucket[/prefix]`. Nothing is contacted
// here beyond reading the configuration: the first request reports an unreachable endpoint or
// wrong credentials.
Result<std::unique_ptr<Storage>> OpenStorage(const std::string& address,
                                             const StoreOptions& options = {});

// `options` as the mount program's -o options (backupfs(1): s3_endpoint=, s3_region=,
// s3_profile=, s3_memory=, s3_cache_dir=, s3_cache_size=), for a tool that mounts a store
// through it so that the mount reads it as the tool would. Keys are left out: a command line is
// public, and the mount finds them as the tool did, in its environment or the profile. A
// relative cache directory is made absolute (the mount runs from /).
std::string MountOptionsOf(const StoreOptions& options);

// fuse_opt splits option values at commas; a backslash keeps one (or itself) in a value.
std::string EscapeMountOption(std::string_view value);

}  // namespace backupfs
