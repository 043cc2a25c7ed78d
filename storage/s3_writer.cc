#include "storage/s3_writer.h"

#include <algorithm>
#include <cstdio>

namespace backupfs {

S3MultipartWriter::S3MultipartWriter(std::shared_ptr<const S3Client> client, std::string bucket,
                                     std::string key, uint64_t part_bytes, unsigned threads)
    : client_(std::move(client)),
      bucket_(std::move(bucket)),
      key_(std::move(key)),
      url_(HttpClient::Url(bucket_, key_)),
      base_part_bytes_(std::max(part_bytes, kMinPartBytes)),
      threads_wanted_(std::max(threads, 1u)) {}

S3MultipartWriter::~S3MultipartWriter() {
  StopThreads();
  if (!committed_ && !upload_id_.empty()) Abort();
}

uint64_t S3MultipartWriter::PartSize(uint64_t base, unsigned number) {
  const uint64_t cap = std::max(base, kMaxPartBytes);
  uint64_t size = base;
  for (unsigned step = (number - 1) / kPartsPerStep; step > 0 && size < cap; --step) size *= 2;
  return std::min(size, cap);
}

Status S3MultipartWriter::Append(std::span<const uint8_t> bytes) {
  if (!error_.ok()) return error_;
  if (committed_) return error_ = Status::InvalidArgument(url_ + ": append after commit");
  while (!bytes.empty()) {
    const uint64_t part = PartSize(base_part_bytes_, next_part_);
    if (current_.capacity() < part) current_.reserve(part);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), part - current_.size()));
    current_.insert(current_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
    bytes = bytes.subspan(n);
    size_ += n;
    if (current_.size() == part && !(error_ = SendPart()).ok()) return error_;
  }
  return Status::Ok();
}

Status S3MultipartWriter::StartUpload() {
  BFS_ASSIGN_OR_RETURN(upload_id_, client_->CreateMultipartUpload(bucket_, key_));
  for (unsigned i = 0; i < threads_wanted_; ++i) threads_.emplace_back([this] { Upload(); });
  return Status::Ok();
}

Status S3MultipartWriter::SendPart() {
  if (next_part_ > kMaxParts) {
    return Status::InvalidArgument(url_ + ": too large for one multipart upload (more than " +
                                   std::to_string(kMaxParts) + " parts, " + std::to_string(size_) +
                                   " bytes)");
  }
  if (upload_id_.empty()) BFS_RETURN_IF_ERROR(StartUpload());
  std::vector<uint8_t> next;
  {
    MutexLock lock(mu_);
    while (in_flight_ >= threads_wanted_ && upload_error_.ok()) changed_.Wait(mu_);
    if (!upload_error_.ok()) return upload_error_;
    queue_.push_back(Job{next_part_++, std::move(current_)});
    ++in_flight_;
    if (!spare_.empty()) {
      next = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  changed_.NotifyAll();
  current_ = std::move(next);
  current_.clear();
  return Status::Ok();
}

void S3MultipartWriter::Upload() {
  for (;;) {
    Job job;
    {
      MutexLock lock(mu_);
      while (queue_.empty() && !stop_) changed_.Wait(mu_);
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      if (!upload_error_.ok()) {  // the upload is lost already: do not send more of it
        --in_flight_;
        changed_.NotifyAll();
        continue;
      }
    }
    auto etag = client_->UploadPart(bucket_, key_, upload_id_, job.number, job.bytes);
    {
      MutexLock lock(mu_);
      if (etag.ok()) {
        if (etags_.size() < job.number) etags_.resize(job.number);
        etags_[job.number - 1] = std::move(*etag);
      } else if (upload_error_.ok()) {
        upload_error_ = etag.status();
      }
      --in_flight_;
      if (spare_.size() < 2) spare_.push_back(std::move(job.bytes));
    }
    changed_.NotifyAll();
  }
}

Status S3MultipartWriter::Drain() {
  MutexLock lock(mu_);
  while (in_flight_ > 0) changed_.Wait(mu_);
  return upload_error_;
}

void S3MultipartWriter::StopThreads() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  changed_.NotifyAll();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

// The last part (even a small file's only one: the upload then carries it, where a PUT at
// Commit would first fail after the sidecars were stored) goes up, and every part is waited for.
Status S3MultipartWriter::Flush() {
  if (!error_.ok()) return error_;
  if (committed_) return Status::InvalidArgument(url_ + ": flushed after commit");
  if (!current_.empty() || upload_id_.empty()) {
    if (!(error_ = SendPart()).ok()) return error_;
  }
  error_ = Drain();
  flushed_ = error_.ok();
  return error_;
}

Status S3MultipartWriter::Commit() {
  if (!error_.ok()) return error_;
  if (committed_) return Status::InvalidArgument(url_ + ": committed twice");
  if (upload_id_.empty()) {  // smaller than one part: one PUT
    auto etag = client_->PutObject(bucket_, key_, current_);
    if (!etag.ok()) return error_ = etag.status();
    committed_ = true;
    current_ = {};
    return Status::Ok();
  }
  if (!flushed_ && !(error_ = Flush()).ok()) return error_;
  StopThreads();
  std::vector<std::string> etags;
  {
    MutexLock lock(mu_);
    etags = etags_;
  }
  auto etag = client_->CompleteMultipartUpload(bucket_, key_, upload_id_, etags);
  if (!etag.ok()) return error_ = etag.status();
  committed_ = true;
  return Status::Ok();
}

void S3MultipartWriter::Abort() {
  const Status s = client_->AbortMultipartUpload(bucket_, key_, upload_id_);
  if (s.ok()) return;
  std::fprintf(stderr,
               "backupfs: warning: could not abort multipart upload %s of %s, which stays "
               "stored until the next backupfs-capture into this saveset removes it (or aws s3api "
               "abort-multipart-upload): %s\n",
               upload_id_.c_str(), url_.c_str(), s.ToString().c_str());
}

}  // namespace backupfs
