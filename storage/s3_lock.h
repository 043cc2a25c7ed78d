// The writer lock of a saveset in a bucket, which works across hosts because it lives on the
// store: an object created only if absent (PUT If-None-Match: *) that holds who has it,
//
//   {"holder": "backupfs-capture", "host": "hv1", "pid": 4242,
//    "started": "2026-11-30T17:05:14Z", "expires": "2026-11-30T17:10:14Z"}
//
// renewed by its holder (PUT If-Match its own ETag) well before `expires`, and deleted when the
// holder lets go. A lock whose `expires` has passed was left by a holder that died: it is
// taken over by a PUT If-Match the ETag of that dead lock, which only one contender can win.
// (Not by a conditional DELETE and a create: Ceph RGW 16 ignores If-Match on DELETE.)
// A host whose clock is off by more than a lease may take over a live lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "storage/s3_client.h"
#include "stream/storage.h"

namespace backupfs {

struct S3LockRecord {
  std::string holder;
  std::string host;
  int64_t pid = 0;
  int64_t started_ns = 0;
  int64_t expires_ns = 0;
};

std::string S3LockJson(const S3LockRecord& record);
// nullopt when `json` is not a lock record.
std::optional<S3LockRecord> ParseS3Lock(std::string_view json);

struct S3LockSpec {
  std::shared_ptr<const S3Client> client;
  std::string bucket;
  std::string key;
  std::string saveset;  // the s3:// address, for messages
  std::chrono::milliseconds lease{};
  std::chrono::milliseconds renew{};
};

// Takes the lock for `holder`: FailedPrecondition naming the holder, host, pid and the saveset
// when another run has it. The result renews it from a thread of its own until destroyed.
Result<std::unique_ptr<StorageLock>> AcquireS3Lock(const S3LockSpec& spec, std::string_view holder);

// Whether the lock object exists and has not expired. An unreachable store counts as busy.
bool S3LockBusy(const S3LockSpec& spec);

}  // namespace backupfs
