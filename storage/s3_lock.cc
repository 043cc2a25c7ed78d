#include "storage/s3_lock.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/thread_annotations.h"
#include "storage/s3_xml.h"

namespace backupfs {
namespace {

constexpr uint64_t kMaxLockBytes = 64u << 10;
constexpr int kMaxTakeAttempts = 3;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Iso8601(int64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

// The first line of a small /proc file ("" when it cannot be read).
std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string BootId() { return FirstLine("/proc/sys/kernel/random/boot_id"); }

std::string PidNamespace() {
  char buf[64] = {};
  const ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// When process `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat); nullopt
// when no such process runs.
std::optional<int64_t> ProcessStart(int64_t pid) {
  const std::string stat = FirstLine("/proc/" + std::to_string(pid) + "/stat");
  const size_t comm_end = stat.rfind(')');  // the command name may hold spaces and ')'
  if (comm_end == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(comm_end + 1));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) return std::strtoll(field.c_str(), nullptr, 10);
  }
  return std::nullopt;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string HeldBy(const S3LockSpec& spec, const S3LockRecord& r) {
  return spec.saveset + " is in use by another run (" + r.holder + " on host " + r.host + ", pid " +
         std::to_string(r.pid) + ", since " + Iso8601(r.started_ns) + ", lock valid until " +
         Iso8601(r.expires_ns) + ": " + HttpClient::Url(spec.bucket, spec.key) +
         "): try again later";
}

// A lock held by this process: renewed by a thread of its own, deleted on destruction.
class S3Lock final : public StorageLock {
 public:
  S3Lock(S3LockSpec spec, S3LockRecord record, std::string etag)
      : spec_(std::move(spec)),
        url_(HttpClient::Url(spec_.bucket, spec_.key)),
        record_(std::move(record)),
        etag_(std::move(etag)),
        // The record's expiry on this host's steady clock, which no clock step moves.
        valid_until_(std::chrono::steady_clock::now() +
                     std::chrono::nanoseconds(record_.expires_ns - NowNs())) {
    renewer_ = std::thread([this] { RenewUntilStopped(); });
  }

  ~S3Lock() override {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    stopped_.NotifyAll();
    renewer_.join();
    Release();
  }

  // Lost when a renewal found another holder, when none succeeded within the lease, or when
  // the lock object is no longer the version this process last wrote (one HEAD).
  Status Held() const override EXCLUDES(request_mu_, mu_) {
    MutexLock requests(request_mu_);  // no renewal changes the object while it is compared
    if (Status s = Known(); !s.ok()) return s;
    auto head = spec_.client->HeadObject(spec_.bucket, spec_.key);
    if (!head.ok()) return Known();  // the store cannot say: the lease still can
    std::string etag;
    {
      MutexLock lock(mu_);
      etag = etag_;
    }
    std::string why;
    if (!*head) {
      why = "its lock object " + url_ + " was removed by another run";
    } else if ((*head)->etag != etag) {
      why = "another run took over its lock " + url_ + " (now held by " + Holder() + ")";
    }
    MutexLock lock(mu_);
    if (lost_.empty()) lost_ = why;
    return Lost();
  }

 private:
  // What this process knows without asking the store.
  Status Known() const EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (lost_.empty() && std::chrono::steady_clock::now() >= valid_until_) {
      lost_ =
          "its lock " + url_ + " was not renewed in time (the lease of " +
          std::to_string(std::chrono::duration_cast<std::chrono::seconds>(spec_.lease).count()) +
          " s ran out at " + Iso8601(record_.expires_ns) + "): " + last_error_;
    }
    return Lost();
  }

  Status Lost() const REQUIRES(mu_) {
    if (lost_.empty()) return Status::Ok();
    return Status::FailedPrecondition(spec_.saveset + " is no longer locked by this run: " + lost_);
  }

  // Who holds the lock object now, as far as one GET tells.
  std::string Holder() const {
    auto body = spec_.client->GetObject(spec_.bucket, spec_.key, kMaxLockBytes);
    const std::optional<S3LockRecord> r = body.ok() ? ParseS3Lock(*body) : std::nullopt;
    if (!r) return "an unknown holder";
    return r->holder + " on host " + r->host + ", pid " + std::to_string(r->pid);
  }

  // False once stopped; true at `deadline`.
  bool SleepUntil(std::chrono::steady_clock::time_point deadline) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      stopped_.WaitUntil(mu_, deadline);
    }
    return !stop_;
  }

  bool IsLost() const EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return !lost_.empty();
  }

  void RenewUntilStopped() EXCLUDES(request_mu_, mu_) {
    while (!IsLost() && SleepUntil(std::chrono::steady_clock::now() + spec_.renew)) Renew();
  }

  void Renew() EXCLUDES(request_mu_, mu_) {
    MutexLock requests(request_mu_);
    S3PutConditions only_ours;
    S3LockRecord next;
    {
      MutexLock lock(mu_);
      next = record_;
      only_ours.if_match = etag_;
    }
    const auto sent = std::chrono::steady_clock::now();
    next.expires_ns = NowNs() + std::chrono::nanoseconds(spec_.lease).count();
    auto etag =
        spec_.client->PutObject(spec_.bucket, spec_.key, Bytes(S3LockJson(next)), only_ours);
    MutexLock lock(mu_);
    if (etag.ok()) {
      etag_ = std::move(*etag);
      record_ = next;
      valid_until_ = sent + spec_.lease;
      return;
    }
    last_error_ = "the last renewal failed: " + etag.status().ToString();
    const bool taken = etag.status().code() == StatusCode::kFailedPrecondition ||
                       etag.status().code() == StatusCode::kNotFound;
    if (taken) lost_ = "another run took over or removed its lock " + url_;
    std::fprintf(stderr, "backupfs: warning: %s the lock of %s: %s\n",
                 taken ? "lost (another run took over or removed)" : "cannot renew",
                 spec_.saveset.c_str(), etag.status().ToString().c_str());
  }

  // Deletes the lock object if it is still ours. Ceph RGW 16 ignores If-Match on DELETE, so
  // a HEAD checks first; the lock is valid for a lease after the last renewal, so nobody can
  // have taken it over in between.
  void Release() EXCLUDES(mu_) {
    std::string etag;
    int64_t expires_ns = 0;
    {
      MutexLock lock(mu_);  // lost or not: a lock still of our version is removed
      etag = etag_;
      expires_ns = record_.expires_ns;
    }
    auto head = spec_.client->HeadObject(spec_.bucket, spec_.key);
    Status s = head.status();
    if (s.ok() && (!*head || (*head)->etag != etag)) return;
    if (s.ok()) s = spec_.client->DeleteObject(spec_.bucket, spec_.key, etag);
    if (s.ok()) return;
    std::fprintf(stderr,
                 "backupfs: warning: cannot release the lock of %s (it expires at %s): %s\n",
                 spec_.saveset.c_str(), Iso8601(expires_ns).c_str(), s.ToString().c_str());
  }

  const S3LockSpec spec_;
  const std::string url_;  // s3://bucket/key of the lock object
  std::thread renewer_;

  // Held across each request on the lock object (a renewal, Held's comparison), so that a
  // comparison never sees the store's new version before this process knows its ETag.
  mutable Mutex request_mu_ ACQUIRED_BEFORE(mu_);
  mutable Mutex mu_;
  CondVar stopped_;
  bool stop_ GUARDED_BY(mu_) = false;
  S3LockRecord record_ GUARDED_BY(mu_);
  std::string etag_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point valid_until_ GUARDED_BY(mu_);
  std::string last_error_ GUARDED_BY(mu_) = "no renewal finished within it";
  mutable std::string lost_ GUARDED_BY(mu_);  // why the lock is no longer ours; "" while it is
};

Result<std::unique_ptr<StorageLock>> Held(const S3LockSpec& spec, S3LockRecord record,
                                          std::string etag) {
  return std::unique_ptr<StorageLock>(new S3Lock(spec, std::move(record), std::move(etag)));
}

}  // namespace

std::string S3LockJson(const S3LockRecord& r) {
  nlohmann::json j = {{"holder", r.holder},
                      {"host", r.host},
                      {"pid", r.pid},
                      {"started", Iso8601(r.started_ns)},
                      {"expires", Iso8601(r.expires_ns)}};
  if (r.pid_start != 0) j["pid_start"] = r.pid_start;
  if (!r.boot_id.empty()) j["boot_id"] = r.boot_id;
  if (!r.pid_ns.empty()) j["pid_ns"] = r.pid_ns;
  return j.dump() + "\n";
}

S3LockRecord ThisProcessLockRecord(std::string_view holder) {
  S3LockRecord r;
  r.holder = std::string(holder);
  r.host = HostName();
  r.pid = getpid();
  r.pid_start = ProcessStart(r.pid).value_or(0);
  r.boot_id = BootId();
  r.pid_ns = PidNamespace();
  return r;
}

std::optional<std::string> DeadLocalHolder(const S3LockRecord& r) {
  if (r.host != HostName() || r.pid <= 0) return std::nullopt;
  if (!r.boot_id.empty() && r.boot_id != BootId()) {
    return "pid " + std::to_string(r.pid) + " ran before this host last booted";
  }
  // The same number in another PID namespace (a container of the same name) is another process.
  if (!r.pid_ns.empty() && r.pid_ns != PidNamespace()) return std::nullopt;
  const std::optional<int64_t> start = ProcessStart(r.pid);
  if (!start) return "pid " + std::to_string(r.pid) + " is no longer running";
  if (r.pid_start != 0 && *start != r.pid_start) {
    return "pid " + std::to_string(r.pid) +
           " is no longer running (that number is now another "
           "process's)";
  }
  return std::nullopt;
}

std::optional<S3LockRecord> ParseS3Lock(std::string_view json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto text = [&j](const char* key) -> std::string {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
  };
  S3LockRecord r;
  r.holder = text("holder");
  r.host = text("host");
  const auto number = [&j](const char* key) -> int64_t {
    const auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  r.pid = number("pid");
  r.pid_start = number("pid_start");
  r.boot_id = text("boot_id");
  r.pid_ns = text("pid_ns");
  const auto started = ParseIso8601(text("started"));
  const auto expires = ParseIso8601(text("expires"));
  if (!expires) return std::nullopt;
  r.started_ns = started.value_or(0);
  r.expires_ns = *expires;
  return r;
}

Result<std::unique_ptr<StorageLock>> AcquireS3Lock(const S3LockSpec& spec,
                                                   std::string_view holder) {
  const std::string url = HttpClient::Url(spec.bucket, spec.key);
  for (int attempt = 0; attempt < kMaxTakeAttempts; ++attempt) {
    S3LockRecord mine = ThisProcessLockRecord(holder);
    mine.started_ns = NowNs();
    mine.expires_ns = mine.started_ns + std::chrono::nanoseconds(spec.lease).count();
    const std::string json = S3LockJson(mine);
    S3PutConditions if_absent;
    if_absent.if_none_match = true;
    auto created = spec.client->PutObject(spec.bucket, spec.key, Bytes(json), if_absent);
    if (created.ok()) return Held(spec, std::move(mine), std::move(*created));
    if (created.status().code() != StatusCode::kFailedPrecondition) {
      return created.status().WithPrefix("cannot lock " + spec.saveset);
    }
    std::string etag;
    auto body = spec.client->GetObject(spec.bucket, spec.key, kMaxLockBytes, &etag);
    if (!body.ok() && body.status().code() == StatusCode::kNotFound) continue;  // just released
    if (!body.ok()) return body.status().WithPrefix("cannot lock " + spec.saveset);
    const auto held = ParseS3Lock(*body);
    if (!held) {
      return Status::FailedPrecondition(spec.saveset + " has a lock object that is not a lock (" +
                                        url + "): remove it if no writer runs");
    }
    const std::optional<std::string> dead = DeadLocalHolder(*held);
    if (!dead && held->expires_ns > NowNs()) {
      return Status::FailedPrecondition(HeldBy(spec, *held));
    }
    // Its holder died: take over what it left, unless another contender is quicker.
    S3PutConditions if_still_dead;
    if_still_dead.if_match = etag;
    auto taken = spec.client->PutObject(spec.bucket, spec.key, Bytes(json), if_still_dead);
    if (taken.ok()) {
      if (dead && held->expires_ns > NowNs()) {
        std::fprintf(stderr,
                     "backupfs: took over the lock of %s at once, before its lease ended at %s: "
                     "its holder %s on this host (%s, since %s) died: %s\n",
                     spec.saveset.c_str(), Iso8601(held->expires_ns).c_str(), held->holder.c_str(),
                     held->host.c_str(), Iso8601(held->started_ns).c_str(), dead->c_str());
      }
      return Held(spec, std::move(mine), std::move(*taken));
    }
    if (taken.status().code() != StatusCode::kFailedPrecondition &&
        taken.status().code() != StatusCode::kNotFound) {
      return taken.status().WithPrefix("cannot lock " + spec.saveset);
    }
  }
  return Status::FailedPrecondition(spec.saveset + ": its lock " + url +
                                    " kept changing while being taken: try again later");
}

bool S3LockBusy(const S3LockSpec& spec) {
  auto body = spec.client->GetObject(spec.bucket, spec.key, kMaxLockBytes);
  if (!body.ok()) return body.status().code() != StatusCode::kNotFound;
  const auto held = ParseS3Lock(*body);
  return !held || (held->expires_ns > NowNs() && !DeadLocalHolder(*held));
}

}  // namespace backupfs
