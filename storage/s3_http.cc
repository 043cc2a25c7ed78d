#include "storage/s3_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "common/thread_annotations.h"
#include "storage/s3_xml.h"

namespace backupfs {

namespace {

constexpr long kConnectTimeoutMs = 10'000;
// A transfer slower than this for this long is a stalled one: given up, then retried.
constexpr long kLowSpeedBytes = 1024;
constexpr long kLowSpeedSeconds = 20;
constexpr size_t kMaxIdleHandles = 32;
constexpr size_t kMaxErrorBody = 64u << 10;
constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::milliseconds(3200);

struct EasyFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Easy = std::unique_ptr<CURL, EasyFree>;
using Slist = std::unique_ptr<curl_slist, SlistFree>;

void InitCurl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

// Idle easy handles, each keeping its connection to the store alive for the next request.
class CurlPool {
 public:
  Easy Acquire() EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      if (!idle_.empty()) {
        Easy e = std::move(idle_.back());
        idle_.pop_back();
        return e;
      }
    }
    return Easy(curl_easy_init());
  }
  void Release(Easy e) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (idle_.size() < kMaxIdleHandles) idle_.push_back(std::move(e));
  }

 private:
  Mutex mu_;
  std::vector<Easy> idle_ GUARDED_BY(mu_);
};

namespace {

// One attempt's state, shared with curl's callbacks.
struct Transfer {
  const HttpRequest* request;
  HttpResponse* response;
  size_t read_offset = 0;
  bool overflow = false;  // the store sent more than the span asked for
  char error[CURL_ERROR_SIZE] = {};
};

bool Ok2xx(long status) { return status >= 200 && status < 300; }

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string_view line(data, size * n);
  HttpResponse& r = *t->response;
  if (line.starts_with("HTTP/")) {  // a new answer (after 100 Continue): forget the last one
    r.headers.clear();
    const size_t sp = line.find(' ');
    r.status =
        sp == std::string_view::npos ? 0 : std::atol(std::string(line.substr(sp + 1)).c_str());
    return line.size();
  }
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    r.headers[Lower(Trim(line.substr(0, colon)))] = std::string(Trim(line.substr(colon + 1)));
    return line.size();
  }
  if (Trim(line).empty() && Ok2xx(r.status)) {  // end of a 2xx answer's headers
    r.content_length = std::strtoull(r.Header("content-length").c_str(), nullptr, 10);
    const bool head = std::string_view(t->request->method) == "HEAD";
    if (!head && !t->request->body_into_span && r.content_length > t->request->max_body) {
      r.too_large = true;
      return 0;  // stop before the body: a hostile size is never read
    }
  }
  return line.size();
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  HttpResponse& r = *t->response;
  const HttpRequest& q = *t->request;
  if (Ok2xx(r.status) && q.body_into_span) {
    if (r.body_bytes + len > q.into.size()) {
      t->overflow = true;
      return 0;
    }
    std::memcpy(q.into.data() + r.body_bytes, data, len);
  } else if (Ok2xx(r.status)) {
    if (r.body_bytes + len > q.max_body) {
      r.too_large = true;
      return 0;
    }
    r.body.append(data, len);
  } else if (r.body.size() < kMaxErrorBody) {
    r.body.append(data, std::min(len, kMaxErrorBody - r.body.size()));
  }
  r.body_bytes += len;
  return len;
}

size_t OnRead(char* out, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const auto body = t->request->body;
  const size_t len = std::min(size * n, body.size() - t->read_offset);
  std::memcpy(out, body.data() + t->read_offset, len);
  t->read_offset += len;
  return len;
}

// curl rewinds the body when it must send it again on the same attempt.
int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > t->request->body.size()) {
    return CURL_SEEKFUNC_FAIL;
  }
  t->read_offset = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

bool RetriableCurl(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

bool RetriableAnswer(const HttpResponse& r, bool error_in_ok_body) {
  if (r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504) return true;
  if (r.status == 400 && r.body.find("<Code>RequestTimeout</Code>") != std::string::npos) {
    return true;
  }
  if (error_in_ok_body && r.status == 200) {
    const auto error = ParseS3Error(r.body);
    return error && (error->code == "InternalError" || error->code == "SlowDown");
  }
  return false;
}

// Full jitter over the upper half: [d/2, d] for the attempt's doubling delay d.
std::chrono::milliseconds Backoff(unsigned attempt) {
  thread_local std::minstd_rand rng(std::random_device{}());
  auto d = kFirstBackoff * (1u << std::min(attempt, 10u));
  d = std::min<std::chrono::milliseconds>(d, kMaxBackoff);
  std::uniform_int_distribution<long> dist(d.count() / 2, d.count());
  return std::chrono::milliseconds(dist(rng));
}

}  // namespace

std::string UriEncode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

HttpClient::HttpClient(S3Config config)
    : config_(std::move(config)),
      sigv4_("aws:amz:" + config_.region + ":s3"),
      pool_(std::make_unique<CurlPool>()) {
  InitCurl();
}

HttpClient::~HttpClient() = default;

std::string HttpClient::Url(const std::string& bucket, const std::string& key) {
  return key.empty() ? "s3://" + bucket : "s3://" + bucket + "/" + key;
}

std::string HttpClient::RequestUrl(const HttpRequest& q) const {
  std::string url;
  const bool dns_bucket =
      q.bucket.find('.') == std::string::npos && q.bucket.find('_') == std::string::npos;
  if (config_.path_style || !dns_bucket) {
    url = config_.endpoint + "/" + UriEncode(q.bucket, false);
    if (!q.key.empty()) url += "/" + UriEncode(q.key, true);
  } else {
    const size_t host = config_.endpoint.find("://") + 3;
    url = config_.endpoint.substr(0, host) + q.bucket + "." + config_.endpoint.substr(host) + "/" +
          UriEncode(q.key, true);
  }
  auto query = q.query;
  std::sort(query.begin(), query.end());
  for (size_t i = 0; i < query.size(); ++i) {
    url += i == 0 ? '?' : '&';
    url += UriEncode(query[i].first, false) + "=" + UriEncode(query[i].second, false);
  }
  return url;
}

namespace {

// Sets up `curl` for one attempt at `q`; `headers` must outlive the transfer.
void Prepare(CURL* curl, const S3Config& config, const std::string& sigv4, const std::string& url,
             const HttpRequest& q, curl_slist* headers, Transfer* t) {
  curl_easy_reset(curl);  // keeps the live connection
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytes);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, kLowSpeedSeconds);
  curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(curl, CURLOPT_USERNAME, config.access_key.c_str());
  curl_easy_setopt(curl, CURLOPT_PASSWORD, config.secret_key.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);
  const std::string_view method = q.method;
  if (method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(q.body.size()));
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, t);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, t);
  } else if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(q.body.size()));
    static const char kEmpty[] = "";
    const void* body = q.body.empty() ? static_cast<const void*>(kEmpty) : q.body.data();
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
  } else if (method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, q.method);
  }
}

Slist Headers(const S3Config& config, const HttpRequest& q) {
  Slist list;
  const auto add = [&list](const std::string& h) {
    curl_slist* l = curl_slist_append(list.get(), h.c_str());
    if (l == nullptr) return;  // out of memory: the request fails its signature check
    (void)list.release();      // the same list, or a new head for the first entry
    list.reset(l);
  };
  add("x-amz-content-sha256: UNSIGNED-PAYLOAD");
  // No "Expect:" to skip 100-continue: curl 7.88 would sign that empty header, which it then
  // does not send, and the signature would not match.
  if (!config.session_token.empty()) add("x-amz-security-token: " + config.session_token);
  for (const std::string& h : q.headers) add(h);
  return list;
}

}  // namespace

Result<HttpResponse> HttpClient::Send(const HttpRequest& q) const {
  const std::string url = RequestUrl(q);
  const Slist headers = Headers(config_, q);
  const auto start = std::chrono::steady_clock::now();
  for (unsigned attempt = 0;; ++attempt) {
    HttpResponse r;
    r.attempts = attempt + 1;
    Transfer t{&q, &r};
    Easy curl = pool_->Acquire();
    if (curl == nullptr) return Status::IOError("cannot allocate a curl handle");
    Prepare(curl.get(), config_, sigv4_, url, q, headers.get(), &t);
    const CURLcode code = curl_easy_perform(curl.get());
    pool_->Release(std::move(curl));
    if (r.too_large) return r;
    if (t.overflow) {
      return Status::IOError(Url(q.bucket, q.key) + ": the store sent more than the " +
                             std::to_string(q.into.size()) + " bytes asked for (" + q.what +
                             ") at " + config_.endpoint);
    }
    const bool retriable =
        code != CURLE_OK ? RetriableCurl(code) : RetriableAnswer(r, q.error_in_ok_body);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    const bool may_retry = retriable && attempt < config_.max_retries &&
                           elapsed < std::chrono::milliseconds(kRetryBudgetMs);
    if (may_retry) {
      std::this_thread::sleep_for(Backoff(attempt));
      continue;
    }
    if (code == CURLE_OK) return r;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
    return Status::Unavailable(Url(q.bucket, q.key) + ": no answer from the store at " +
                               config_.endpoint + " (" + q.what + ", " +
                               std::to_string(attempt + 1) + " attempts in " + std::to_string(ms) +
                               " ms): " + (t.error[0] != 0 ? t.error : curl_easy_strerror(code)));
  }
}

}  // namespace backupfs
