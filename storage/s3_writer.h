// An ObjectWriter that streams an S3 object as a multipart upload while the caller appends:
// each full part goes to one of a few background threads, and the caller fills the next one.
// The upload starts with the first full part; a file smaller than one part is a single PUT at
// Commit(). Commit() waits for the parts and completes the upload: the object appears, whole,
// then and only then (the commit point). Destroyed without Commit(), the writer aborts the
// upload, so the store keeps nothing; when even the abort fails, a warning on stderr names the
// upload id and key, and S3Storage::ListPendingUploads() finds it later.
//
// Memory: at most (threads + 1) parts. Not thread-safe (one thread appends), as ObjectWriter.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"
#include "storage/s3_client.h"
#include "stream/storage.h"

namespace backupfs {

class S3MultipartWriter final : public ObjectWriter {
 public:
  // Part sizes double every kPartsPerStep parts, up to kMaxPartBytes: S3 allows 10,000 parts.
  static constexpr unsigned kPartsPerStep = 2500;
  static constexpr uint64_t kMaxPartBytes = 64u << 20;
  static constexpr unsigned kMaxParts = 10'000;
  static constexpr uint64_t kMinPartBytes = 5u << 20;

  S3MultipartWriter(std::shared_ptr<const S3Client> client, std::string bucket, std::string key,
                    uint64_t part_bytes, unsigned threads);
  ~S3MultipartWriter() override;

  Status Append(std::span<const uint8_t> bytes) override;
  Status Flush() override;
  Status Commit() override;
  const std::string& name() const override { return url_; }
  uint64_t size() const override { return size_; }

  // The size of part `number` (from 1) for a writer whose first parts have `base` bytes.
  static uint64_t PartSize(uint64_t base, unsigned number);

 private:
  struct Job {
    unsigned number = 0;
    std::vector<uint8_t> bytes;
  };

  // Hands the full current part to the uploaders (starting the upload first), waiting while
  // all of them are busy.
  Status SendPart();
  Status StartUpload();
  void Upload() EXCLUDES(mu_);  // a background thread's loop
  // Waits until no part is queued or uploading; the first part's failure, if any.
  Status Drain() EXCLUDES(mu_);
  void StopThreads() EXCLUDES(mu_);
  void Abort();

  const std::shared_ptr<const S3Client> client_;
  const std::string bucket_;
  const std::string key_;
  const std::string url_;
  const uint64_t base_part_bytes_;
  const unsigned threads_wanted_;

  // The appending thread's own state.
  std::vector<uint8_t> current_;
  unsigned next_part_ = 1;
  uint64_t size_ = 0;
  Status error_;  // sticky
  bool committed_ = false;
  bool flushed_ = false;   // every part is stored: Commit only completes the upload
  std::string upload_id_;  // set before the first job is queued, then read-only
  std::vector<std::thread> threads_;

  // Shared with the uploaders.
  Mutex mu_;
  CondVar changed_;
  std::deque<Job> queue_ GUARDED_BY(mu_);
  unsigned in_flight_ GUARDED_BY(mu_) = 0;                   // queued or uploading
  std::vector<std::string> etags_ GUARDED_BY(mu_);           // part n at n - 1
  std::vector<std::vector<uint8_t>> spare_ GUARDED_BY(mu_);  // buffers of uploaded parts
  Status upload_error_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
};

}  // namespace backupfs
