#include "storage/s3_client.h"

#include <curl/curl.h>

namespace backupfs {
namespace {

std::string Unquoted(const std::string& etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    return etag.substr(1, etag.size() - 2);
  }
  return etag;
}

// What an answer means, in words a user can act on.
std::string Meaning(long status, const std::string& code) {
  if (code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch") {
    return "the store refused the credentials";
  }
  if (code == "AccessDenied") return "access denied";
  if (code == "RequestTimeTooSkewed") return "this host's clock differs too much from the store's";
  if (code == "NoSuchBucket") return "no such bucket";
  if (code == "NoSuchKey") return "no such object";
  if (code == "NoSuchUpload") return "no such multipart upload";
  if (status == 412 || code == "PreconditionFailed") return "a condition did not hold";
  if (code == "SlowDown" || status == 503) return "the store is overloaded or unavailable";
  if (status >= 500) return "the store failed";
  if (status == 404) return "not found";
  return "the store refused the request";
}

StatusCode CodeOf(long status, const std::string& code) {
  if (status == 404 || code == "NoSuchBucket" || code == "NoSuchKey") return StatusCode::kNotFound;
  if (status == 412 || status == 409) return StatusCode::kFailedPrecondition;
  if (status == 400 || status == 401 || status == 403) return StatusCode::kInvalidArgument;
  if (status >= 500) return StatusCode::kUnavailable;
  return StatusCode::kIOError;
}

Status Make(StatusCode code, std::string message) {
  switch (code) {
    case StatusCode::kNotFound:
      return Status::NotFound(std::move(message));
    case StatusCode::kFailedPrecondition:
      return Status::FailedPrecondition(std::move(message));
    case StatusCode::kInvalidArgument:
      return Status::InvalidArgument(std::move(message));
    case StatusCode::kUnavailable:
      return Status::Unavailable(std::move(message));
    default:
      return Status::IOError(std::move(message));
  }
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// The S3 error code of a failed answer: from its XML body, else from the header RGW sends with
// a HEAD's bodiless answer.
std::string ErrorCodeOf(const HttpResponse& r) {
  const auto error = ParseS3Error(r.body);
  return error ? error->code : r.Header("x-amz-error-code");
}

// A GET's body, or Corruption when it was more than the request's max_body.
Result<std::string> BodyOf(const HttpRequest& q, HttpResponse r, std::string* etag) {
  if (r.too_large) {
    return Status::Corruption(HttpClient::Url(q.bucket, q.key) + ": " +
                              std::to_string(r.content_length) + " bytes, more than the " +
                              std::to_string(q.max_body) + " it could need");
  }
  if (etag != nullptr) *etag = r.Header("etag");
  return std::move(r.body);
}

}  // namespace

HttpRequest S3Client::Request(const char* method, const std::string& bucket, const std::string& key,
                              const char* what) const {
  HttpRequest q;
  q.method = method;
  q.bucket = bucket;
  q.key = key;
  q.what = what;
  return q;
}

Status S3Client::ErrorOf(const HttpRequest& q, const HttpResponse& r) const {
  const auto error = ParseS3Error(r.body);
  const std::string code = ErrorCodeOf(r);
  std::string detail = std::string(q.what) + ": HTTP " + std::to_string(r.status);
  if (!code.empty()) detail += " " + code;
  if (error && !error->message.empty()) detail += ": " + error->message;
  std::string message = HttpClient::Url(q.bucket, q.key) + ": " + Meaning(r.status, code) + " (" +
                        detail + ") at " + endpoint();
  if (r.attempts > 1) message += ", after " + std::to_string(r.attempts) + " attempts";
  return Make(CodeOf(r.status, code), std::move(message));
}

Result<HttpResponse> S3Client::Exchange(const HttpRequest& q, std::string_view tolerated,
                                        bool* tolerated_seen) const {
  BFS_ASSIGN_OR_RETURN(HttpResponse r, http_.Send(q));
  const bool failed =
      r.status < 200 || r.status >= 300 || (q.error_in_ok_body && ParseS3Error(r.body));
  if (!failed) return r;
  if (tolerated_seen != nullptr && !tolerated.empty() && ErrorCodeOf(r) == tolerated) {
    *tolerated_seen = true;
    return r;
  }
  return ErrorOf(q, r);
}

Result<HttpResponse> S3Client::SendHead(HttpRequest q) const {
  BFS_ASSIGN_OR_RETURN(HttpResponse r, http_.Send(q));
  if (r.status < 400 || r.status >= 500 || r.status == 404 || r.status == 412) return r;
  HttpRequest probe = q;
  probe.method = "GET";
  if (q.key.empty()) {
    probe.query = {{"list-type", "2"}, {"max-keys", "0"}};
  } else {
    probe.headers.push_back("Range: bytes=0-0");
  }
  auto answer = http_.Send(probe);
  if (!answer.ok() || answer->status != r.status) return r;
  answer->attempts = r.attempts;
  return answer;
}

Result<std::optional<S3ObjectInfo>> S3Client::HeadObject(const std::string& bucket,
                                                         const std::string& key) const {
  const HttpRequest q = Request("HEAD", bucket, key, "HEAD");
  BFS_ASSIGN_OR_RETURN(HttpResponse r, SendHead(q));
  if (r.status == 404) return std::optional<S3ObjectInfo>();
  if (r.status < 200 || r.status >= 300) return ErrorOf(q, r);
  S3ObjectInfo info;
  info.key = key;
  info.size = r.content_length;
  info.etag = r.Header("etag");
  const time_t mtime = curl_getdate(r.Header("last-modified").c_str(), nullptr);
  info.mtime_ns = mtime < 0 ? 0 : static_cast<int64_t>(mtime) * 1000000000;
  return std::optional<S3ObjectInfo>(std::move(info));
}

Result<std::string> S3Client::GetObject(const std::string& bucket, const std::string& key,
                                        uint64_t max_size, std::string* etag) const {
  HttpRequest q = Request("GET", bucket, key, "GET");
  q.max_body = max_size;
  BFS_ASSIGN_OR_RETURN(HttpResponse r, Exchange(q));
  return BodyOf(q, std::move(r), etag);
}

Result<std::optional<std::string>> S3Client::GetObjectIfExists(const std::string& bucket,
                                                               const std::string& key,
                                                               uint64_t max_size,
                                                               std::string* etag) const {
  HttpRequest q = Request("GET", bucket, key, "GET");
  q.max_body = max_size;
  bool missing = false;
  BFS_ASSIGN_OR_RETURN(HttpResponse r, Exchange(q, "NoSuchKey", &missing));
  if (missing) return std::optional<std::string>();
  BFS_ASSIGN_OR_RETURN(std::string body, BodyOf(q, std::move(r), etag));
  return std::optional<std::string>(std::move(body));
}

Status S3Client::GetRange(const std::string& bucket, const std::string& key, uint64_t offset,
                          std::span<uint8_t> out, const std::string& if_match) const {
  if (out.empty()) return Status::Ok();
  HttpRequest q = Request("GET", bucket, key, "ranged GET");
  q.headers.push_back("Range: bytes=" + std::to_string(offset) + "-" +
                      std::to_string(offset + out.size() - 1));
  if (!if_match.empty()) q.headers.push_back("If-Match: " + if_match);
  q.into = out;
  q.body_into_span = true;
  auto r = Exchange(q);
  if (!r.ok() && r.status().code() == StatusCode::kFailedPrecondition) {
    return Status::Stale(HttpClient::Url(bucket, key) +
                         ": the object was replaced while being read (it is no longer ETag " +
                         if_match + ")");
  }
  BFS_RETURN_IF_ERROR(r.status());
  if (r->body_bytes != out.size()) {
    return Status::IOError(HttpClient::Url(bucket, key) + ": the store sent " +
                           std::to_string(r->body_bytes) + " bytes for a range of " +
                           std::to_string(out.size()) + " at offset " + std::to_string(offset) +
                           " (" + endpoint() + ")");
  }
  return Status::Ok();
}

Result<std::string> S3Client::PutOnce(const std::string& bucket, const std::string& key,
                                      std::span<const uint8_t> body,
                                      const S3PutConditions& conditions,
                                      const std::string& if_match_header) const {
  HttpRequest q = Request("PUT", bucket, key, "PUT");
  q.body = body;
  q.headers.push_back("Content-Type: application/octet-stream");
  if (conditions.if_none_match) q.headers.push_back("If-None-Match: *");
  if (!if_match_header.empty()) q.headers.push_back("If-Match: " + if_match_header);
  BFS_ASSIGN_OR_RETURN(HttpResponse r, Exchange(q));
  return r.Header("etag");
}

Result<std::string> S3Client::PutObject(const std::string& bucket, const std::string& key,
                                        std::span<const uint8_t> body,
                                        const S3PutConditions& conditions) const {
  auto etag = PutOnce(bucket, key, body, conditions, conditions.if_match);
  if (etag.ok() || conditions.if_match.empty() ||
      etag.status().code() != StatusCode::kFailedPrecondition) {
    return etag;
  }
  // Ceph RGW 16 compares a PUT's If-Match with its ETag stored without quotes, so the quoted
  // ETag it sent us never matches. When the object still is the version asked for, the
  // condition held: say so the way that store understands.
  BFS_ASSIGN_OR_RETURN(auto now, HeadObject(bucket, key));
  if (!now || now->etag != conditions.if_match) return etag;
  return PutOnce(bucket, key, body, conditions, Unquoted(conditions.if_match));
}

Status S3Client::DeleteObject(const std::string& bucket, const std::string& key,
                              const std::string& if_match) const {
  HttpRequest q = Request("DELETE", bucket, key, "DELETE");
  if (!if_match.empty()) q.headers.push_back("If-Match: " + if_match);
  return Exchange(q).status();
}

Result<S3ListPage> S3Client::ListObjectsV2(const std::string& bucket, const std::string& prefix,
                                           const std::string& delimiter,
                                           const std::string& continuation_token,
                                           unsigned max_keys) const {
  HttpRequest q = Request("GET", bucket, "", "ListObjectsV2");
  q.query = {{"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(max_keys)}};
  if (!delimiter.empty()) q.query.emplace_back("delimiter", delimiter);
  if (!continuation_token.empty()) q.query.emplace_back("continuation-token", continuation_token);
  BFS_ASSIGN_OR_RETURN(HttpResponse r, Exchange(q));
  auto page = ParseListObjectsV2(r.body);
  if (!page.ok()) return page.status().WithPrefix(HttpClient::Url(bucket, prefix));
  return page;
}

Status S3Client::CopyObject(const std::string& bucket, const std::string& from,
                            const std::string& to, uint64_t size) const {
  if (size > kMaxCopyBytes) return CopyInParts(bucket, from, to, size);
  HttpRequest q = Request("PUT", bucket, to, "CopyObject");
  q.headers.push_back("x-amz-copy-source: " + UriEncode(bucket + "/" + from, true));
  q.error_in_ok_body = true;  // a copy that fails late answers 200 with an <Error>
  return Exchange(q).status();
}

// Parts of 1 GiB, each copied by the store from its range of `from`.
Status S3Client::CopyInParts(const std::string& bucket, const std::string& from,
                             const std::string& to, uint64_t size) const {
  constexpr uint64_t kPart = uint64_t{1} << 30;
  BFS_ASSIGN_OR_RETURN(const std::string upload, CreateMultipartUpload(bucket, to));
  std::vector<std::string> etags;
  Status s;
  for (uint64_t pos = 0; s.ok() && pos < size; pos += kPart) {
    const std::string what = "UploadPartCopy " + std::to_string(etags.size() + 1);
    HttpRequest q = Request("PUT", bucket, to, what.c_str());
    q.query = {{"partNumber", std::to_string(etags.size() + 1)}, {"uploadId", upload}};
    q.headers.push_back("x-amz-copy-source: " + UriEncode(bucket + "/" + from, true));
    q.headers.push_back("x-amz-copy-source-range: bytes=" + std::to_string(pos) + "-" +
                        std::to_string(std::min(size, pos + kPart) - 1));
    q.error_in_ok_body = true;
    Result<HttpResponse> r = Exchange(q);
    s = r.status();
    if (!s.ok()) break;
    Result<std::string> etag = ParseCopyPartResult(r->body);
    s = etag.status();
    if (s.ok()) etags.push_back(*etag);
  }
  if (s.ok()) s = CompleteMultipartUpload(bucket, to, upload, etags).status();
  if (!s.ok()) (void)AbortMultipartUpload(bucket, to, upload);
  return s;
}

Result<std::string> S3Client::CreateMultipartUpload(const std::string& bucket,
                                                    const std::string& key) const {
  HttpRequest q = Request("POST", bucket, key, "CreateMultipartUpload");
  q.query = {{"uploads", ""}};
  q.headers.push_back("Content-Type: application/octet-stream");
  BFS_ASSIGN_OR_RETURN(HttpResponse r, Exchange(q));
  auto id = ParseInitiateMultipartUpload(r.body);
  if (!id.ok()) return id.status().WithPrefix(HttpClient::Url(bucket, key));
  return id;
}

Result<std::string> S3Client::UploadPart(const std::string& bucket, const std::string& key,
                                         const std::string& upload_id, unsigned part_number,
                                         std::span<const uint8_t> body) const {
  const std::string what = "UploadPart " + std::to_string(part_number);
  HttpRequest q = Request("PUT", bucket, key, what.c_str());
  q.query = {{"partNumber", std::to_string(part_number)}, {"uploadId", upload_id}};
  q.body = body;
  BFS_ASSIGN_OR_RETURN(HttpResponse r, Exchange(q));
  std::string etag = r.Header("etag");
  if (etag.empty()) {
    return Status::IOError(HttpClient::Url(bucket, key) + ": the store sent no ETag for part " +
                           std::to_string(part_number) + " at " + endpoint());
  }
  return etag;
}

Result<std::string> S3Client::CompleteMultipartUpload(const std::string& bucket,
                                                      const std::string& key,
                                                      const std::string& upload_id,
                                                      const std::vector<std::string>& etags) const {
  BFS_ASSIGN_OR_RETURN(const std::string xml, CompleteMultipartUploadXml(etags));
  HttpRequest q = Request("POST", bucket, key, "CompleteMultipartUpload");
  q.query = {{"uploadId", upload_id}};
  q.headers.push_back("Content-Type: application/xml");
  q.body = Bytes(xml);
  q.error_in_ok_body = true;
  bool upload_gone = false;
  auto r = Exchange(q, "NoSuchUpload", &upload_gone);
  if (!r.ok()) return r.status();
  if (upload_gone) return ConfirmCompleted(bucket, key, etags.size(), ErrorOf(q, *r));
  auto etag = ParseCompleteMultipartUpload(r->body);
  if (!etag.ok()) return etag.status().WithPrefix(HttpClient::Url(bucket, key));
  return etag;
}

// A Complete whose answer was lost completes the upload; its retry then finds no such upload
// (`error`). The object is there with a multipart ETag ("...-<parts>") if that is what happened.
Result<std::string> S3Client::ConfirmCompleted(const std::string& bucket, const std::string& key,
                                               size_t parts, const Status& error) const {
  BFS_ASSIGN_OR_RETURN(auto head, HeadObject(bucket, key));
  const std::string suffix = "-" + std::to_string(parts);
  if (!head || !Unquoted(head->etag).ends_with(suffix)) return error;
  return head->etag;
}

Status S3Client::AbortMultipartUpload(const std::string& bucket, const std::string& key,
                                      const std::string& upload_id) const {
  HttpRequest q = Request("DELETE", bucket, key, "AbortMultipartUpload");
  q.query = {{"uploadId", upload_id}};
  bool already_gone = false;
  return Exchange(q, "NoSuchUpload", &already_gone).status();
}

Result<std::vector<S3Upload>> S3Client::ListMultipartUploads(const std::string& bucket,
                                                             const std::string& prefix) const {
  std::vector<S3Upload> out;
  std::string key_marker, id_marker;
  for (unsigned page = 0; page < kMaxPages; ++page) {
    HttpRequest q = Request("GET", bucket, "", "ListMultipartUploads");
    q.query = {{"uploads", ""}, {"prefix", prefix}};
    if (!key_marker.empty()) q.query.emplace_back("key-marker", key_marker);
    if (!id_marker.empty()) q.query.emplace_back("upload-id-marker", id_marker);
    BFS_ASSIGN_OR_RETURN(HttpResponse r, Exchange(q));
    auto parsed = ParseListMultipartUploads(r.body);
    if (!parsed.ok()) return parsed.status().WithPrefix(HttpClient::Url(bucket, prefix));
    for (S3Upload& u : parsed->uploads) out.push_back(std::move(u));
    if (!parsed->truncated) return out;
    if (parsed->next_key_marker == key_marker && parsed->next_upload_id_marker == id_marker) {
      return Status::IOError(HttpClient::Url(bucket, prefix) +
                             ": the store's ListMultipartUploads pages do not advance");
    }
    key_marker = parsed->next_key_marker;
    id_marker = parsed->next_upload_id_marker;
  }
  return Status::IOError(HttpClient::Url(bucket, prefix) + ": more than " +
                         std::to_string(kMaxPages) + " pages of multipart uploads");
}

Status S3Client::HeadBucket(const std::string& bucket) const {
  const HttpRequest q = Request("HEAD", bucket, "", "HeadBucket");
  BFS_ASSIGN_OR_RETURN(HttpResponse r, SendHead(q));
  if (r.status == 404) {
    return Status::NotFound(HttpClient::Url(bucket, "") + ": no such bucket at " + endpoint());
  }
  if (r.status < 200 || r.status >= 300) return ErrorOf(q, r);
  return Status::Ok();
}

Status S3Client::CreateBucket(const std::string& bucket) const {
  const HttpRequest q = Request("PUT", bucket, "", "CreateBucket");
  bool ours_already = false;
  return Exchange(q, "BucketAlreadyOwnedByYou", &ours_already).status();
}

}  // namespace backupfs
