// The S3 operations backupfs needs, over s3_http.h. Each returns the store's answer as values,
// or a Status whose message names the object (s3://bucket/key), the operation, the HTTP status,
// the S3 error Code and Message, and the endpoint:
//
//   s3://bkt/vm1/x: the store refused the credentials (GET: HTTP 403 InvalidAccessKeyId) at
//   http://127.0.0.1:7480
//
// Status codes: NotFound for a missing bucket, object or upload; FailedPrecondition when a
// condition (If-Match, If-None-Match) did not hold; InvalidArgument when the store refused the
// credentials or the request (400, 403); Unavailable when it failed (5xx, SlowDown) or did not
// answer, after the retries of HttpClient::Send; IOError for anything else.
//
// Thread-safe: one client serves every thread of a process, each request on a pooled
// connection.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "storage/s3_config.h"
#include "storage/s3_http.h"
#include "storage/s3_xml.h"
#include "stream/status.h"

namespace backupfs {

struct S3PutConditions {
  bool if_none_match = false;  // create only: If-None-Match: *
  std::string if_match;        // replace only this ETag (quotes as the store sent it)
};

class S3Client {
 public:
  explicit S3Client(S3Config config) : http_(std::move(config)) {}

  const S3Config& config() const { return http_.config(); }
  const std::string& endpoint() const { return http_.config().endpoint; }

  // nullopt when there is no such key (or no such bucket: a HEAD cannot tell them apart).
  Result<std::optional<S3ObjectInfo>> HeadObject(const std::string& bucket,
                                                 const std::string& key) const;
  // The whole object (and its ETag, when `etag` is given); Corruption naming it when its
  // Content-Length is more than `max_size` (the body is then not read).
  Result<std::string> GetObject(const std::string& bucket, const std::string& key,
                                uint64_t max_size, std::string* etag = nullptr) const;
  // As GetObject, but nullopt when the store answers NoSuchKey (a missing bucket stays an error).
  Result<std::optional<std::string>> GetObjectIfExists(const std::string& bucket,
                                                       const std::string& key, uint64_t max_size,
                                                       std::string* etag = nullptr) const;
  // Exactly out.size() bytes at `offset`, straight into `out`. With `if_match` (an ETag), a
  // Stale error when the object is no longer that version: replaced while being read.
  Status GetRange(const std::string& bucket, const std::string& key, uint64_t offset,
                  std::span<uint8_t> out, const std::string& if_match) const;
  // Returns the new object's ETag.
  Result<std::string> PutObject(const std::string& bucket, const std::string& key,
                                std::span<const uint8_t> body,
                                const S3PutConditions& conditions = {}) const;
  // A missing key is not an error (S3 answers 204). `if_match` is sent, but Ceph RGW 16
  // ignores it on DELETE: callers that need the condition check it with a HEAD first.
  Status DeleteObject(const std::string& bucket, const std::string& key,
                      const std::string& if_match = "") const;
  // One page of keys under `prefix`; with a delimiter, what lies deeper is one common prefix.
  Result<S3ListPage> ListObjectsV2(const std::string& bucket, const std::string& prefix,
                                   const std::string& delimiter,
                                   const std::string& continuation_token,
                                   unsigned max_keys = 1000) const;

  // A server-side copy of `from` (of `size` bytes) to `to` in the same bucket: one request up
  // to kMaxCopyBytes, else a multipart upload of ranged part copies. No data passes through us.
  Status CopyObject(const std::string& bucket, const std::string& from, const std::string& to,
                    uint64_t size) const;
  static constexpr uint64_t kMaxCopyBytes = uint64_t{5} << 30;  // S3's limit for one copy

  // Returns the upload id.
  Result<std::string> CreateMultipartUpload(const std::string& bucket,
                                            const std::string& key) const;
  // Returns the part's ETag. Parts are numbered from 1.
  Result<std::string> UploadPart(const std::string& bucket, const std::string& key,
                                 const std::string& upload_id, unsigned part_number,
                                 std::span<const uint8_t> body) const;
  // Part i + 1 has etags[i]. Returns the object's ETag. The object appears, whole, when this
  // succeeds; a retry that finds the upload gone because the first try completed it is a
  // success.
  Result<std::string> CompleteMultipartUpload(const std::string& bucket, const std::string& key,
                                              const std::string& upload_id,
                                              const std::vector<std::string>& etags) const;
  // An upload that is already gone is not an error.
  Status AbortMultipartUpload(const std::string& bucket, const std::string& key,
                              const std::string& upload_id) const;
  // Every unfinished upload of a key under `prefix` (all pages, at most kMaxPages of them).
  Result<std::vector<S3Upload>> ListMultipartUploads(const std::string& bucket,
                                                     const std::string& prefix) const;

  // Ok when the bucket exists and the credentials reach it; NotFound naming it when it does not.
  Status HeadBucket(const std::string& bucket) const;
  // For tests and setup: a new bucket in the client's region (an existing one of ours is Ok).
  Status CreateBucket(const std::string& bucket) const;

  static constexpr unsigned kMaxPages = 10'000;

 private:
  HttpRequest Request(const char* method, const std::string& bucket, const std::string& key,
                      const char* what) const;
  Status CopyInParts(const std::string& bucket, const std::string& from, const std::string& to,
                     uint64_t size) const;
  // Sends a HEAD; when it fails with no body to say why (any 4xx but 404 and 412), asks again
  // with a GET of nothing to learn the store's error code.
  Result<HttpResponse> SendHead(HttpRequest request) const;
  // The Status for a failed answer (see the top of this file).
  Status ErrorOf(const HttpRequest& request, const HttpResponse& response) const;
  // Sends `request` and turns any answer but 2xx into ErrorOf's Status, except one whose S3
  // error code is `tolerated`: that answer comes back as it is, with `*tolerated_seen` set, for
  // the caller to act on (the code is matched as a code, never found in a message).
  Result<HttpResponse> Exchange(const HttpRequest& request, std::string_view tolerated = {},
                                bool* tolerated_seen = nullptr) const;
  Result<std::string> PutOnce(const std::string& bucket, const std::string& key,
                              std::span<const uint8_t> body, const S3PutConditions& conditions,
                              const std::string& if_match_header) const;
  Result<std::string> ConfirmCompleted(const std::string& bucket, const std::string& key,
                                       size_t parts, const Status& error) const;

  HttpClient http_;
};

}  // namespace backupfs
