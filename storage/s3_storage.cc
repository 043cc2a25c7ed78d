#include "storage/s3_storage.h"

#include <algorithm>
#include <functional>

#include "storage/s3_lock.h"
#include "storage/s3_writer.h"

namespace backupfs {
namespace {

constexpr unsigned kMaxListPages = S3Client::kMaxPages;
// Derived files are built in memory before they go to the disk cache.
constexpr uint64_t kMaxDerivedBytes = uint64_t{1} << 30;

// One object, read with ranged GETs that hold only while it is the version seen at open.
class S3File final : public StoredFile {
 public:
  S3File(std::shared_ptr<const S3Client> client, std::string bucket, S3ObjectInfo info)
      : client_(std::move(client)),
        bucket_(std::move(bucket)),
        info_(std::move(info)),
        url_(HttpClient::Url(bucket_, info_.key)) {}

  uint64_t size() const override { return info_.size; }
  const std::string& name() const override { return url_; }
  const std::string& version() const override { return info_.etag; }

  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > info_.size || out.size() > info_.size - offset) {
      return Status::Corruption(url_ + ": read of " + std::to_string(out.size()) +
                                " bytes at offset " + std::to_string(offset) + " past the end (" +
                                std::to_string(info_.size) + " bytes)");
    }
    return client_->GetRange(bucket_, info_.key, offset, out, info_.etag);
  }

 private:
  const std::shared_ptr<const S3Client> client_;
  const std::string bucket_;
  const S3ObjectInfo info_;
  const std::string url_;
};

// A derived file, gathered in memory and handed to `keep` at Commit().
class DerivedWriter final : public ObjectWriter {
 public:
  using Keep = std::function<Status(std::span<const uint8_t>)>;
  DerivedWriter(std::string name, Keep keep) : name_(std::move(name)), keep_(std::move(keep)) {}

  Status Append(std::span<const uint8_t> bytes) override {
    if (!error_.ok()) return error_;
    if (committed_) return error_ = Status::InvalidArgument(name_ + ": append after commit");
    if (bytes.size() > kMaxDerivedBytes - bytes_.size()) {
      return error_ = Status::InvalidArgument(name_ + ": a derived file of more than " +
                                              std::to_string(kMaxDerivedBytes) + " bytes");
    }
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
    return Status::Ok();
  }
  Status Flush() override { return error_; }  // kept in memory until Commit
  Status Commit() override {
    if (!error_.ok()) return error_;
    if (committed_) return Status::InvalidArgument(name_ + ": committed twice");
    BFS_RETURN_IF_ERROR(error_ = keep_(bytes_));
    committed_ = true;
    return Status::Ok();
  }
  const std::string& name() const override { return name_; }
  uint64_t size() const override { return bytes_.size(); }

 private:
  const std::string name_;
  const Keep keep_;
  std::vector<uint8_t> bytes_;
  bool committed_ = false;
  Status error_;
};

int64_t WholeSeconds(int64_t ns) { return ns / 1000000000 * 1000000000; }

StoredObject ObjectOf(std::string name, const S3ObjectInfo& info) {
  StoredObject o;
  o.name = std::move(name);
  o.size = info.size;
  o.mtime_ns = WholeSeconds(info.mtime_ns);
  o.version = info.etag;
  return o;
}

StoredObject DirOf(std::string name) {
  StoredObject o;
  o.name = std::move(name);
  if (o.name.empty() || o.name.back() != '/') o.name += '/';
  return o;
}

}  // namespace

S3Storage::S3Storage(std::string address, std::string bucket, std::string prefix,
                     std::shared_ptr<const S3Client> client, S3StorageOptions options)
    : address_(std::move(address)),
      bucket_(std::move(bucket)),
      prefix_(std::move(prefix)),
      client_(std::move(client)),
      options_(std::move(options)) {}

std::string S3Storage::Key(std::string_view name) const {
  return name.empty() ? prefix_ : JoinName(prefix_, name);
}

std::string S3Storage::Describe(std::string_view name) const {
  return HttpClient::Url(bucket_, Key(name));
}

std::string S3Storage::DirPrefix(std::string_view dir) const {
  const std::string key = Key(dir);
  return key.empty() ? "" : key + "/";
}

Status S3Storage::CheckBucket() const {
  if (bucket_checked_.load()) return Status::Ok();
  const Status s = client_->HeadBucket(bucket_);
  if (s.ok()) bucket_checked_.store(true);
  return s;
}

Result<bool> S3Storage::Exists() const {
  BFS_ASSIGN_OR_RETURN(S3ListPage page, client_->ListObjectsV2(bucket_, DirPrefix(""), "", "", 1));
  bucket_checked_.store(true);
  return !page.objects.empty();
}

Result<std::vector<StoredObject>> S3Storage::List(std::string_view dir) const {
  const std::string prefix = DirPrefix(dir);
  std::vector<StoredObject> out;
  bool anything = false;
  std::string token;
  for (unsigned page_number = 0; page_number < kMaxListPages; ++page_number) {
    BFS_ASSIGN_OR_RETURN(S3ListPage page, client_->ListObjectsV2(bucket_, prefix, "/", token));
    bucket_checked_.store(true);
    for (const S3ObjectInfo& o : page.objects) {
      anything = true;
      std::string name = o.key.substr(prefix.size());
      if (name.empty()) continue;  // a "directory marker" some tools write
      if (dir.empty() && name == kLockName) continue;
      out.push_back(ObjectOf(std::move(name), o));
    }
    for (const std::string& p : page.common_prefixes) {
      anything = true;
      const std::string name = p.substr(prefix.size());
      if (name.size() > 1) out.push_back(DirOf(name));
    }
    if (!page.truncated) {
      if (!anything) return Status::NotFound(Describe(dir) + ": nothing is stored under it");
      return out;
    }
    token = page.next_token;
  }
  return Status::IOError(Describe(dir) + ": more than " + std::to_string(kMaxListPages) +
                         " pages of listing");
}

// One HEAD: a store has objects, not directories (Sub(dir)->Exists() asks about a prefix).
Result<std::optional<StoredObject>> S3Storage::Stat(std::string_view name) const {
  if (name.empty()) return std::optional<StoredObject>();
  BFS_ASSIGN_OR_RETURN(auto head, client_->HeadObject(bucket_, Key(name)));
  if (head) return std::optional<StoredObject>(ObjectOf(std::string(name), *head));
  BFS_RETURN_IF_ERROR(CheckBucket());
  return std::optional<StoredObject>();
}

Result<std::unique_ptr<StoredFile>> S3Storage::Open(std::string_view name) const {
  BFS_ASSIGN_OR_RETURN(auto head, client_->HeadObject(bucket_, Key(name)));
  if (!head) {
    BFS_RETURN_IF_ERROR(CheckBucket());
    return Status::NotFound(Describe(name) + ": no such object at " + client_->endpoint());
  }
  std::unique_ptr<StoredFile> file(new S3File(client_, bucket_, std::move(*head)));
  if (options_.read_cache != nullptr) return options_.read_cache->Wrap(std::move(file));
  return file;
}

Result<std::string> S3Storage::ReadAll(std::string_view name, uint64_t max_size) const {
  BFS_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                       client_->GetObjectIfExists(bucket_, Key(name), max_size));
  if (stored) return std::move(*stored);
  if (options_.disk_cache != nullptr) {
    auto derived = options_.disk_cache->Get(DerivedKey(name));
    if (derived.ok() && derived->has_value() && (*derived)->size() <= max_size) {
      return std::move(**derived);
    }
  }
  return Status::NotFound(Describe(name) + ": no such object (GET: HTTP 404 NoSuchKey) at " +
                          client_->endpoint());
}

std::string S3Storage::DerivedKey(std::string_view name) const {
  return "derived " + client_->endpoint() + " " + Describe(name);
}

Status S3Storage::PutDerived(std::string_view name, std::span<const uint8_t> bytes) const {
  if (options_.disk_cache == nullptr) return Status::Ok();  // a mount never writes the bucket
  return options_.disk_cache->Put(DerivedKey(name), bytes);
}

Result<std::unique_ptr<ObjectWriter>> S3Storage::Create(std::string_view name,
                                                        const PutOptions& options) {
  if (options.derived) {
    return std::unique_ptr<ObjectWriter>(new DerivedWriter(
        Describe(name),
        [this, key = std::string(name)](auto bytes) { return PutDerived(key, bytes); }));
  }
  return std::unique_ptr<ObjectWriter>(new S3MultipartWriter(
      client_, bucket_, Key(name), options_.part_bytes, options_.upload_threads));
}

Status S3Storage::Put(std::string_view name, std::span<const uint8_t> bytes,
                      const PutOptions& options) {
  if (options.derived) return PutDerived(name, bytes);
  return client_->PutObject(bucket_, Key(name), bytes).status();
}

Status S3Storage::Remove(std::string_view name) {
  return client_->DeleteObject(bucket_, Key(name));
}

Status S3Storage::MakeDir(std::string_view /*dir*/) { return Status::Ok(); }

Status S3Storage::Rename(std::string_view from, std::string_view to) {
  BFS_ASSIGN_OR_RETURN(std::optional<S3ObjectInfo> info, client_->HeadObject(bucket_, Key(from)));
  if (!info) return Status::NotFound(Describe(from) + ": no such file to move");
  BFS_RETURN_IF_ERROR(client_->CopyObject(bucket_, Key(from), Key(to), info->size));
  return client_->DeleteObject(bucket_, Key(from));
}

std::unique_ptr<Storage> S3Storage::Sub(std::string_view dir) const {
  return std::make_unique<S3Storage>(JoinName(address_, dir), bucket_, Key(dir), client_, options_);
}

StoreStamp S3Storage::Stamp(std::string_view dir) const {
  Result<std::vector<StoredObject>> listed = List(dir);
  if (!listed.ok()) return {};
  return StampOfListing(Describe(dir), *listed);
}

Result<std::unique_ptr<StorageLock>> S3Storage::Lock(std::string_view holder) {
  S3LockSpec spec{
      client_, bucket_, Key(kLockName), address_, options_.lock_lease, options_.lock_renew};
  return AcquireS3Lock(spec, holder);
}

bool S3Storage::Busy() const {
  S3LockSpec spec{
      client_, bucket_, Key(kLockName), address_, options_.lock_lease, options_.lock_renew};
  return S3LockBusy(spec);
}

Result<std::vector<PendingUpload>> S3Storage::ListPendingUploads() const {
  const std::string prefix = DirPrefix("");
  BFS_ASSIGN_OR_RETURN(std::vector<S3Upload> uploads,
                       client_->ListMultipartUploads(bucket_, prefix));
  std::vector<PendingUpload> out;
  for (S3Upload& u : uploads) {
    PendingUpload p;
    p.name = u.key.substr(prefix.size());
    p.key = std::move(u.key);
    p.upload_id = std::move(u.upload_id);
    p.initiated_ns = u.initiated_ns;
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::vector<std::string>> S3Storage::RemoveUnfinished() {
  BFS_ASSIGN_OR_RETURN(std::vector<PendingUpload> pending, ListPendingUploads());
  std::vector<std::string> removed;
  for (const PendingUpload& p : pending) {
    BFS_RETURN_IF_ERROR(client_->AbortMultipartUpload(bucket_, p.key, p.upload_id));
    removed.push_back(Describe(p.name) + " (multipart upload " + p.upload_id + ")");
  }
  return removed;
}

}  // namespace backupfs
