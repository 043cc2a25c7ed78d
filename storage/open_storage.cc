#include "storage/open_storage.h"

#include "storage/s3_config.h"
#include "storage/s3_storage.h"
#include "stream/local_storage.h"

namespace backupfs {

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
  return std::unique_ptr<Storage>(
      new S3Storage(address, bucket, std::string(prefix), std::move(client)));
}

}  // namespace backupfs
