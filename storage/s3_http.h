// HTTP to an S3 store over libcurl: requests signed with curl's own SigV4, sent on pooled,
// kept-alive connections, retried with backoff when the store is down, overloaded or slow.
// Knows the S3 wire rules (URL and query encoding, addressing style, which answers are worth
// another try), not the meaning of each operation: that is s3_client.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "storage/s3_config.h"
#include "stream/status.h"

namespace backupfs {

struct HttpRequest {
  const char* method = "GET";  // GET, HEAD, PUT, POST, DELETE
  std::string bucket;
  std::string key;  // "" for requests on the bucket
  // Query parameters; sent sorted by name, each as name=value, as SigV4 (and curl 7.88, which
  // signs the query as it is written) needs.
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::string> headers;  // "Name: value"
  std::span<const uint8_t> body;     // PUT and POST; resent as is on a retry
  // A 2xx answer's body goes into `into` when set (it must fill it exactly: a ranged GET),
  // else into HttpResponse::body, up to `max_body` bytes (larger is HttpResponse::too_large,
  // found from Content-Length before any of it is read).
  std::span<uint8_t> into;
  bool body_into_span = false;
  uint64_t max_body = 16u << 20;
  // CompleteMultipartUpload can answer 200 and an <Error> body: treat such a body as a failure
  // (retried when its code says so).
  bool error_in_ok_body = false;
  const char* what = "";  // the operation, for messages: "GET", "PUT part 3"
};

struct HttpResponse {
  long status = 0;
  std::string body;         // the error body, or a 2xx body not sent into a span
  uint64_t body_bytes = 0;  // bytes of the body received
  bool too_large = false;   // Content-Length was more than max_body
  uint64_t content_length = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  unsigned attempts = 0;
  std::string Header(const std::string& lower_name) const {
    const auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

class CurlPool;

class HttpClient {
 public:
  explicit HttpClient(S3Config config);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request`, again after a connection failure, a timeout, HTTP 500/502/503/504 or a
  // RequestTimeout, with exponential backoff and jitter, at most config.max_retries more
  // times and never starting one more after kRetryBudget. Returns the last answer whatever
  // its status (the caller gives it meaning), or Unavailable when no answer came, naming the
  // endpoint, the object and what curl said.
  Result<HttpResponse> Send(const HttpRequest& request) const;

  const S3Config& config() const { return config_; }
  // "s3://bucket/key" (or "s3://bucket") for messages.
  static std::string Url(const std::string& bucket, const std::string& key);

  // The time after the first attempt when no further retry starts.
  static constexpr int kRetryBudgetMs = 40'000;

 private:
  std::string RequestUrl(const HttpRequest& request) const;

  const S3Config config_;
  const std::string sigv4_;  // "aws:amz:<region>:s3"
  std::unique_ptr<CurlPool> pool_;
};

// SigV4's UriEncode: everything but A-Z a-z 0-9 - _ . ~ as %XY (and "/" too when `slash`).
std::string UriEncode(std::string_view s, bool keep_slash);

}  // namespace backupfs
