// The writer lock of a saveset in a bucket, which works across hosts because it lives on the
// store: an object created only if absent (PUT If-None-Match: *) that holds who has it,
//
//   {"holder": "backupfs-capture", "host": "hv1", "pid": 4242, "pid_start": 912345,
//    "boot_id": "6f0c...", "pid_ns": "pid:[4026531836]",
//    "started": "2026-11-30T17:05:14Z", "expires": "2026-11-30T17:10:14Z"}
//
// renewed by its holder (PUT If-Match its own ETag) well before `expires`, and deleted when the
// holder lets go. A lock whose `expires` has passed was left by a holder that died: it is
// taken over by a PUT If-Match the ETag of that dead lock, which only one contender can win.
// (Not by a conditional DELETE and a create: Ceph RGW 16 ignores If-Match on DELETE.)
// A host whose clock is off by more than a lease may take over a live lock.
//
// A holder that died on this very host need not be waited for: when the record names this
// host (and this boot and PID namespace, when it says which), and its pid is no longer running
// or is now another process (its start time differs), the lock is taken over at once, the same
// way, with a line on stderr naming the dead holder. A holder on another host keeps its lease.
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
  // The holder's start in clock ticks after boot (/proc/PID/stat field 22), this boot's id
  // (/proc/sys/kernel/random/boot_id) and its PID namespace (/proc/self/ns/pid): with the host,
  // they tell whether the holder still runs. 0 or "" in records of older versions.
  int64_t pid_start = 0;
  std::string boot_id;
  std::string pid_ns;
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

// The record of this process, as a lock it took now would hold.
S3LockRecord ThisProcessLockRecord(std::string_view holder);

// Why the holder of `record` is known to be dead ("pid 4242 is no longer running"), judged from
// this host's /proc; nullopt when it may be alive or runs elsewhere (another host, boot or PID
// namespace: only its lease tells).
std::optional<std::string> DeadLocalHolder(const S3LockRecord& record);

// Takes the lock for `holder`: FailedPrecondition naming the holder, host, pid and the saveset
// when another run has it. The result renews it from a thread of its own until destroyed.
Result<std::unique_ptr<StorageLock>> AcquireS3Lock(const S3LockSpec& spec, std::string_view holder);

// Whether the lock object exists and has not expired. An unreachable store counts as busy.
bool S3LockBusy(const S3LockSpec& spec);

}  // namespace backupfs
