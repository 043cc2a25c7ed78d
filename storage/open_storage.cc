#include "storage/open_storage.h"

#include <algorithm>
#include <filesystem>

#include "storage/disk_cache.h"
#include "storage/read_cache.h"
#include "storage/s3_config.h"
#include "storage/s3_storage.h"
#include "stream/local_storage.h"

namespace backupfs {

namespace {

// The caches of a store's reads from its options: memory, and a disk directory when one is
// given (which also keeps the indexes built by scanning savesets without one).
Status MakeCaches(const StoreOptions& options, S3StorageOptions* s3) {
  if (!options.cache_dir.empty()) {
    BFS_ASSIGN_OR_RETURN(s3->disk_cache,
                         DiskCache::Open(options.cache_dir, options.cache_dir_bytes));
  }
  if (options.memory_cache_bytes == 0 && s3->disk_cache == nullptr) return Status::Ok();
  ReadCacheOptions cache;
  // Blocks pass through memory on their way to and from the disk, however little is kept.
  cache.memory_bytes =
      std::max(options.memory_cache_bytes, cache.block_bytes * cache.fetch_threads * 2);
  cache.disk = s3->disk_cache;
  s3->read_cache = ReadCache::Create(cache);
  return Status::Ok();
}

}  // namespace

bool IsStoreAddress(std::string_view address) { return address.starts_with("s3://"); }

Result<std::unique_ptr<Storage>> OpenStorage(const std::string& address,
                                             const StoreOptions& options) {
  if (!IsStoreAddress(address)) return OpenLocalStorage(address);
  std::string_view rest = std::string_view(address).substr(5);
  const size_t slash = rest.find('/');
  const std::string bucket(rest.substr(0, slash));
  std::string_view prefix = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  while (prefix.starts_with('/')) prefix.remove_prefix(1);
  if (bucket.empty()) {
    return Status::InvalidArgument(address + ": no bucket name (expected s3://bucket/prefix)");
  }
  BFS_ASSIGN_OR_RETURN(S3Config config, ResolveS3Config(options));
  auto client = std::make_shared<const S3Client>(std::move(config));
  S3StorageOptions s3;
  BFS_RETURN_IF_ERROR(MakeCaches(options, &s3));
  return std::unique_ptr<Storage>(
      new S3Storage(address, bucket, std::string(prefix), std::move(client), std::move(s3)));
}

std::string MountOptionsOf(const StoreOptions& options) {
  constexpr uint64_t kMiB = 1u << 20;
  auto mib = [](uint64_t bytes) { return std::to_string((bytes + kMiB - 1) / kMiB); };
  std::string out = "s3_memory=" + mib(options.memory_cache_bytes);
  auto add = [&out](const char* name, const std::string& value) {
    if (!value.empty()) out += std::string(",") + name + "=" + EscapeMountOption(value);
  };
  add("s3_endpoint", options.endpoint);
  add("s3_region", options.region);
  add("s3_profile", options.profile);
  if (!options.cache_dir.empty()) {
    add("s3_cache_dir", std::filesystem::absolute(options.cache_dir).lexically_normal().string());
    add("s3_cache_size", mib(options.cache_dir_bytes));
  }
  return out;
}

std::string EscapeMountOption(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace backupfs
