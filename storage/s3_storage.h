// A saveset under a prefix of an S3 bucket: `s3://bucket/prefix`. A file's name maps to the
// key prefix + "/" + name (the name itself when the prefix is empty), so a saveset in a bucket
// has the same names and bytes as in a directory and `aws s3 sync` copies one into the other.
//
//   List      ListObjectsV2 with delimiter "/": deeper keys are one "dir/" entry; version is
//             the ETag, mtime LastModified (whole seconds, as HEAD gives it). The writer lock's
//             object is not listed. Nothing under a prefix is a missing directory (NotFound):
//             a store has no empty directories, and Exists() is false then.
//   Stat      HEAD (a directory when keys lie under name + "/"); nullopt when there is neither
//   Open      HEAD, then ranged GETs conditional on the ETag seen: a reader of an object being
//             replaced gets the old bytes or a Stale error, never a mix
//   Create    a multipart upload streamed from background threads while the caller appends
//             (s3_writer.h); the object appears, whole, when Commit() completes the upload
//   Lock      an object `<prefix>/.backupfs-lock` created only if absent (s3_lock.h)
//
// Files opened are read through the options' ReadCache when there is one. Derived files
// (PutOptions::derived: indexes built by scanning a saveset that has none) never go into the
// bucket, which a mount must not write: they are kept in the options' DiskCache, where ReadAll
// finds them when the bucket has no such file, or not kept at all without one.
//
// Thread-safe, as Storage requires.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "storage/disk_cache.h"
#include "storage/read_cache.h"
#include "storage/s3_client.h"
#include "stream/storage.h"

namespace backupfs {

struct S3StorageOptions {
  // Multipart uploads: the size of a part (S3 needs at least 5 MiB for all but the last; it
  // doubles every kPartsPerStep parts up to kMaxPartBytes, so an upload of 10,000 parts holds
  // 430 GiB) and the parts uploaded at once. Memory: (upload_threads + 1) parts per writer.
  uint64_t part_bytes = 16u << 20;
  unsigned upload_threads = 3;
  // The writer lock: how long a lock stays valid without renewal, and how often its holder
  // renews it.
  std::chrono::milliseconds lock_lease = std::chrono::minutes(5);
  std::chrono::milliseconds lock_renew = std::chrono::minutes(1);
  // Reads of opened files go through this cache when set (shared by all of them).
  std::shared_ptr<ReadCache> read_cache;
  // Where derived files are kept, if anywhere.
  std::shared_ptr<DiskCache> disk_cache;
};

// A multipart upload that was started under the saveset's prefix and never completed or
// aborted: what a writer that died leaves behind (invisible, but stored and billed).
struct PendingUpload {
  std::string name;  // relative to the saveset
  std::string key;
  std::string upload_id;
  int64_t initiated_ns = 0;
};

class S3Storage final : public Storage {
 public:
  // `prefix` has no leading or trailing "/" ("" for the whole bucket). Nothing is contacted.
  S3Storage(std::string address, std::string bucket, std::string prefix,
            std::shared_ptr<const S3Client> client, S3StorageOptions options = {});

  const std::string& address() const override { return address_; }
  std::string Describe(std::string_view name) const override;

  Result<bool> Exists() const override;
  Result<std::vector<StoredObject>> List(std::string_view dir = "") const override;
  Result<std::optional<StoredObject>> Stat(std::string_view name) const override;
  Result<std::unique_ptr<StoredFile>> Open(std::string_view name) const override;
  Result<std::string> ReadAll(std::string_view name,
                              uint64_t max_size = uint64_t{1} << 30) const override;
  Result<std::unique_ptr<ObjectWriter>> Create(std::string_view name,
                                               const PutOptions& options = {}) override;
  Status Put(std::string_view name, std::span<const uint8_t> bytes,
             const PutOptions& options = {}) override;
  Status Remove(std::string_view name) override;
  Status Rename(std::string_view from, std::string_view to) override;
  Status MakeDir(std::string_view dir) override;
  std::unique_ptr<Storage> Sub(std::string_view dir) const override;
  // One listing of `dir`: its token is a digest of every name and ETag in it, so any upload,
  // replacement or removal changes it (a store has no directory mtime to ask instead).
  StoreStamp Stamp(std::string_view dir = "") const override;
  Result<std::unique_ptr<StorageLock>> Lock(std::string_view holder) override;
  bool Busy() const override;
  // Every multipart upload under the prefix (see ListPendingUploads).
  Result<std::vector<std::string>> RemoveUnfinished() override;

  // The uploads writers that died mid-upload left (RemoveUnfinished aborts them).
  Result<std::vector<PendingUpload>> ListPendingUploads() const;

  const std::string& prefix() const { return prefix_; }
  // The key of a file of the saveset.
  std::string Key(std::string_view name) const;

  static constexpr const char* kLockName = ".backupfs-lock";

 private:
  // After a HEAD found nothing: NotFound naming the bucket when it is the bucket that is
  // missing (checked once per storage), else Ok.
  Status CheckBucket() const;
  // A key's listing prefix for `dir`: "prefix/dir/", or "" for the root of a whole bucket.
  std::string DirPrefix(std::string_view dir) const;
  // The disk cache's key of a derived file: the endpoint and the file's URL.
  std::string DerivedKey(std::string_view name) const;
  Status PutDerived(std::string_view name, std::span<const uint8_t> bytes) const;

  const std::string address_;
  const std::string bucket_;
  const std::string prefix_;
  const std::shared_ptr<const S3Client> client_;
  const S3StorageOptions options_;
  mutable std::atomic<bool> bucket_checked_{false};
};

}  // namespace backupfs
