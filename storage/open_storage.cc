#include "storage/open_storage.h"

#include "stream/local_storage.h"

namespace backupfs {

bool IsStoreAddress(std::string_view address) { return address.starts_with("s3://"); }

Result<std::unique_ptr<Storage>> OpenStorage(const std::string& address,
                                             const StoreOptions& /*options*/) {
  if (!IsStoreAddress(address)) return OpenLocalStorage(address);
  return Status::InvalidArgument(address + ": S3 storage is not built yet");
}

}  // namespace backupfs
