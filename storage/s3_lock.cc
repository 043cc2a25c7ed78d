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
      : spec_(std::move(spec)), record_(std::move(record)), etag_(std::move(etag)) {
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

 private:
  // False once stopped; true at `deadline`.
  bool SleepUntil(std::chrono::steady_clock::time_point deadline) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      stopped_.WaitUntil(mu_, deadline);
    }
    return !stop_;
  }

  void RenewUntilStopped() {
    while (!lost_ && SleepUntil(std::chrono::steady_clock::now() + spec_.renew)) Renew();
  }

  void Renew() {
    S3LockRecord next = record_;
    next.expires_ns = NowNs() + std::chrono::nanoseconds(spec_.lease).count();
    S3PutConditions only_ours;
    only_ours.if_match = etag_;
    auto etag =
        spec_.client->PutObject(spec_.bucket, spec_.key, Bytes(S3LockJson(next)), only_ours);
    if (etag.ok()) {
      etag_ = std::move(*etag);
      record_ = next;
      return;
    }
    lost_ = etag.status().code() == StatusCode::kFailedPrecondition ||
            etag.status().code() == StatusCode::kNotFound;
    std::fprintf(stderr, "backupfs: warning: %s the lock of %s: %s\n",
                 lost_ ? "lost (another run took over or removed)" : "cannot renew",
                 spec_.saveset.c_str(), etag.status().ToString().c_str());
  }

  // Deletes the lock object if it is still ours. Ceph RGW 16 ignores If-Match on DELETE, so
  // a HEAD checks first; the lock is valid for a lease after the last renewal, so nobody can
  // have taken it over in between.
  void Release() {
    if (lost_) return;
    auto head = spec_.client->HeadObject(spec_.bucket, spec_.key);
    Status s = head.status();
    if (s.ok() && (!*head || (*head)->etag != etag_)) return;
    if (s.ok()) s = spec_.client->DeleteObject(spec_.bucket, spec_.key, etag_);
    if (s.ok()) return;
    std::fprintf(stderr,
                 "backupfs: warning: cannot release the lock of %s (it expires at %s): %s\n",
                 spec_.saveset.c_str(), Iso8601(record_.expires_ns).c_str(), s.ToString().c_str());
  }

  const S3LockSpec spec_;
  // The renewing thread's while it runs, the destructor's after it has stopped.
  S3LockRecord record_;
  std::string etag_;
  bool lost_ = false;
  std::thread renewer_;

  Mutex mu_;
  CondVar stopped_;
  bool stop_ GUARDED_BY(mu_) = false;
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
