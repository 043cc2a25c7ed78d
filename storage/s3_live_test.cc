// The S3 storage against a real Ceph RADOS Gateway (scripts/rgw.sh on ports 7611-7620, or
// BFS_S3_LIVE_PORT..+9): round trips, multipart uploads, the commit point, abandoned writers,
// readers of replaced objects, wrong keys, a missing bucket, the writer lock and a gateway that
// goes away. Also prints the throughput and latency figures of the client. Skipped when Ceph is not
// installed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include <sys/wait.h>
#include <unistd.h>

#include "storage/disk_cache.h"
#include "storage/open_storage.h"
#include "storage/read_cache.h"
#include "storage/s3_lock.h"
#include "storage/s3_storage.h"
#include "storage/s3_test_gateway.h"
#include "stream/test_util.h"

namespace backupfs {
namespace {

using testing::RandomBytes;
using testing::TestGateway;
using Clock = std::chrono::steady_clock;

// The gateway's port block: 7611 unless BFS_S3_LIVE_PORT names another (so that runs of
// several worktrees on one machine need not share one).
int GatewayPort() {
  const char* port = std::getenv("BFS_S3_LIVE_PORT");
  return port != nullptr && std::atoi(port) > 0 ? std::atoi(port) : 7611;
}
constexpr const char* kBucket = "live";

std::span<const uint8_t> Bytes(std::string_view s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class S3LiveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::HaveProgram("radosgw") || !testing::HaveProgram("ceph-mon")) return;
    gateway_ = new TestGateway(std::string(BFS_SOURCE_DIR) + "/scripts/rgw.sh", GatewayPort());
    if (!gateway_->Up()) return;
    up_ = true;
    auto config = ResolveS3Config(gateway_->Options());
    if (!config.ok()) return;
    client_ = new std::shared_ptr<const S3Client>(std::make_shared<S3Client>(*config));
    const Status made = (*client_)->CreateBucket(kBucket);
    bucket_error_ = new std::string(made.ToString());
    bucket_made_ = made.ok();
  }
  static void TearDownTestSuite() {
    delete client_;
    client_ = nullptr;
    delete bucket_error_;
    bucket_error_ = nullptr;
    delete gateway_;
    gateway_ = nullptr;
  }

  void SetUp() override {
    if (gateway_ == nullptr) GTEST_SKIP() << "Ceph (radosgw, ceph-mon) is not installed";
    ASSERT_TRUE(up_) << "scripts/rgw.sh up failed: see the logs in " << gateway_->dir();
    ASSERT_TRUE(bucket_made_) << "cannot create bucket " << kBucket << ": " << *bucket_error_;
  }

  // A saveset of this test's own: s3://live/<test name>.
  std::unique_ptr<S3Storage> Saveset(S3StorageOptions options = {}) {
    const std::string prefix = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    return std::make_unique<S3Storage>(std::string("s3://") + kBucket + "/" + prefix, kBucket,
                                       prefix, *client_, options);
  }

  static const S3Client& client() { return **client_; }

  static TestGateway* gateway_;
  static std::shared_ptr<const S3Client>* client_;
  static bool up_;
  static bool bucket_made_;
  static std::string* bucket_error_;
};
std::string* S3LiveTest::bucket_error_ = nullptr;

TestGateway* S3LiveTest::gateway_ = nullptr;
std::shared_ptr<const S3Client>* S3LiveTest::client_ = nullptr;
bool S3LiveTest::up_ = false;
bool S3LiveTest::bucket_made_ = false;

std::vector<std::string> Names(const std::vector<StoredObject>& objects) {
  std::vector<std::string> names;
  for (const StoredObject& o : objects) names.push_back(o.name);
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(S3LiveTest, PutReadStatListRemove) {
  auto s = Saveset();
  EXPECT_FALSE(*s->Exists());
  ASSERT_TRUE(s->PutText("vda.full.data", "full bytes").ok());
  ASSERT_TRUE(s->PutText("checkpoints/virtnbdbackup.0.xml", "<checkpoint/>").ok());
  EXPECT_TRUE(*s->Exists());

  EXPECT_EQ(*s->ReadAll("vda.full.data"), "full bytes");
  auto st = s->Stat("vda.full.data");
  ASSERT_TRUE(st.ok() && st->has_value()) << st.status().ToString();
  EXPECT_EQ((*st)->size, 10u);
  EXPECT_FALSE((*st)->version.empty());
  EXPECT_GT((*st)->mtime_ns, 0);
  // A store has no directories: Stat is one HEAD, and a prefix is asked about through Sub.
  auto dir = s->Stat("checkpoints");
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  EXPECT_FALSE(dir->has_value());
  auto under = s->Sub("checkpoints")->Exists();
  ASSERT_TRUE(under.ok()) << under.status().ToString();
  EXPECT_TRUE(*under);
  EXPECT_FALSE(*s->Sub("nothing")->Exists());

  auto root = s->List();
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(Names(*root), (std::vector<std::string>{"checkpoints/", "vda.full.data"}));
  for (const StoredObject& o : *root) {
    if (o.is_dir()) continue;
    EXPECT_EQ(o.version, (*st)->version);
    EXPECT_EQ(o.mtime_ns, (*st)->mtime_ns);  // LastModified and HEAD agree to the second
  }
  auto sub = s->List("checkpoints");
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(Names(*sub), (std::vector<std::string>{"virtnbdbackup.0.xml"}));
  auto missing_dir = s->List("nothing");
  EXPECT_EQ(missing_dir.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing_dir.status().message().find("s3://live/PutReadStatListRemove/nothing"),
            std::string::npos);

  ASSERT_TRUE(s->Remove("vda.full.data").ok());
  EXPECT_FALSE(s->Stat("vda.full.data")->has_value());
  EXPECT_TRUE(s->Remove("vda.full.data").ok());  // removing what is not there is fine
  auto gone = s->ReadAll("vda.full.data");
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find("s3://live/PutReadStatListRemove/vda.full.data"),
            std::string::npos);
  EXPECT_NE(gone.status().message().find("NoSuchKey"), std::string::npos);
  auto open = s->Open("vda.full.data");
  EXPECT_EQ(open.status().code(), StatusCode::kNotFound);

  auto big = s->ReadAll("checkpoints/virtnbdbackup.0.xml", 5);
  EXPECT_EQ(big.status().code(), StatusCode::kCorruption);
  EXPECT_NE(big.status().message().find("13 bytes, more than the 5"), std::string::npos);
}

TEST_F(S3LiveTest, KeysWithOddCharactersAndPagedListing) {
  auto s = Saveset();
  const std::vector<std::string> names = {"a b+c=d&e.txt", "ü~ñ%20.data", "x;y,z(1).xml", "plain.0",
                                          "plain.1"};
  for (const std::string& n : names) ASSERT_TRUE(s->PutText(n, n).ok()) << n;
  for (const std::string& n : names) EXPECT_EQ(*s->ReadAll(n), n);
  auto all = s->List();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  auto sorted = names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(Names(*all), sorted);

  // Pages of two: continuation tokens go back signed and encoded.
  std::vector<std::string> keys;
  std::string token;
  for (int page = 0; page < 10; ++page) {
    auto p = client().ListObjectsV2(kBucket, s->prefix() + "/", "/", token, 2);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_LE(p->objects.size(), 2u);
    for (const auto& o : p->objects) keys.push_back(o.key.substr(s->prefix().size() + 1));
    if (!p->truncated) break;
    token = p->next_token;
  }
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, sorted);
}

// Odd piece sizes, so parts never line up with appends.
void AppendInPieces(ObjectWriter& w, std::span<const uint8_t> data) {
  static constexpr size_t kPieces[] = {1, 4097, (1u << 20) + 3, 65535, (7u << 20) + 11, 333};
  for (size_t off = 0, i = 0; off < data.size(); ++i) {
    const size_t n = std::min(kPieces[i % std::size(kPieces)], data.size() - off);
    ASSERT_TRUE(w.Append(data.subspan(off, n)).ok());
    off += n;
  }
}

TEST_F(S3LiveTest, MultipartUploadIsInvisibleUntilCommitAndReadsBackExactly) {
  auto s = Saveset();
  const std::vector<uint8_t> data = RandomBytes(100u << 20, 7);
  auto w = s->Create("vda.full.data");
  ASSERT_TRUE(w.ok());
  AppendInPieces(**w, data);
  EXPECT_EQ((*w)->size(), data.size());
  EXPECT_EQ((*w)->name(), "s3://live/" + s->prefix() + "/vda.full.data");

  // Before the commit point: nothing under the name, one upload pending.
  EXPECT_FALSE(s->Stat("vda.full.data")->has_value());
  EXPECT_EQ(s->List().status().code(), StatusCode::kNotFound);
  auto pending = s->ListPendingUploads();
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].name, "vda.full.data");

  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_TRUE(s->ListPendingUploads()->empty());
  auto st = s->Stat("vda.full.data");
  ASSERT_TRUE(st->has_value());
  EXPECT_EQ((*st)->size, data.size());
  EXPECT_NE((*st)->version.find("-7\""), std::string::npos) << (*st)->version;  // 7 parts

  auto f = s->Open("vda.full.data");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->fd(), -1);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) {
    const uint64_t len = 1 + rng() % (3u << 20);
    const uint64_t off = rng() % (data.size() - len + 1);
    std::vector<uint8_t> got(len);
    ASSERT_TRUE((*f)->ReadAt(off, got).ok());
    ASSERT_EQ(0, std::memcmp(got.data(), data.data() + off, len)) << "at " << off;
  }
  std::vector<uint8_t> all(data.size());
  ASSERT_TRUE((*f)->ReadAt(0, all).ok());
  EXPECT_TRUE(all == data);
  std::vector<uint8_t> past(2);
  EXPECT_EQ((*f)->ReadAt(data.size() - 1, past).code(), StatusCode::kCorruption);
}

TEST_F(S3LiveTest, AbandonedWriterLeavesNothing) {
  auto s = Saveset();
  const std::vector<uint8_t> data = RandomBytes(40u << 20, 3);
  {
    auto w = s->Create("vda.inc.virtnbdbackup.1.data");
    AppendInPieces(**w, data);
    ASSERT_EQ(s->ListPendingUploads()->size(), 1u);
  }  // destroyed without Commit()
  EXPECT_FALSE(s->Stat("vda.inc.virtnbdbackup.1.data")->has_value());
  auto pending = s->ListPendingUploads();
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
  EXPECT_FALSE(*s->Exists());
}

TEST_F(S3LiveTest, PendingUploadsOfADeadWriterAreListedAndAborted) {
  auto s = Saveset();
  auto id = client().CreateMultipartUpload(kBucket, s->Key("left.data"));
  ASSERT_TRUE(id.ok());
  auto pending = s->ListPendingUploads();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].upload_id, *id);
  EXPECT_EQ((*pending)[0].name, "left.data");
  EXPECT_GT((*pending)[0].initiated_ns, 0);
  auto removed = s->RemoveUnfinished();
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(*removed, (std::vector<std::string>{s->Describe("left.data") + " (multipart upload " +
                                                *id + ")"}));
  EXPECT_TRUE(s->ListPendingUploads()->empty());
}

TEST_F(S3LiveTest, ReaderOfAReplacedObjectGetsStaleNotAMix) {
  auto s = Saveset();
  const std::vector<uint8_t> v1 = RandomBytes(1u << 20, 1);
  const std::vector<uint8_t> v2 = RandomBytes(1u << 20, 2);
  ASSERT_TRUE(s->Put("vda.full.data", v1).ok());
  auto f = s->Open("vda.full.data");
  ASSERT_TRUE(f.ok());
  std::vector<uint8_t> got(4096);
  ASSERT_TRUE((*f)->ReadAt(0, got).ok());
  EXPECT_EQ(0, std::memcmp(got.data(), v1.data(), got.size()));

  ASSERT_TRUE(s->Put("vda.full.data", v2).ok());
  const Status stale = (*f)->ReadAt(4096, got);
  EXPECT_EQ(stale.code(), StatusCode::kStale) << stale.ToString();
  EXPECT_NE(stale.message().find("replaced while being read"), std::string::npos);
  EXPECT_NE(stale.message().find("s3://live/"), std::string::npos);

  auto reopened = s->Open("vda.full.data");
  ASSERT_TRUE((*reopened)->ReadAt(4096, got).ok());
  EXPECT_EQ(0, std::memcmp(got.data(), v2.data() + 4096, got.size()));
  EXPECT_NE((*reopened)->version(), (*f)->version());
}

TEST_F(S3LiveTest, WrongKeysFailFastNamingTheCode) {
  StoreOptions options = gateway_->Options();
  options.secret_key = "not-the-secret";
  auto s = OpenStorage(std::string("s3://") + kBucket + "/x", options);
  ASSERT_TRUE(s.ok());
  const auto start = Clock::now();
  auto st = (*s)->Stat("vda.full.data");
  EXPECT_LT(Seconds(Clock::now() - start), 2.0);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("refused the credentials"), std::string::npos)
      << st.status().message();
  EXPECT_NE(st.status().message().find("SignatureDoesNotMatch"), std::string::npos);
  EXPECT_NE(st.status().message().find("127.0.0.1:" + std::to_string(GatewayPort())),
            std::string::npos);
  EXPECT_NE(st.status().message().find("s3://live/x/vda.full.data"), std::string::npos);

  options.access_key = "nobody";
  auto other = OpenStorage(std::string("s3://") + kBucket + "/x", options);
  auto listed = (*other)->List();
  EXPECT_NE(listed.status().message().find("InvalidAccessKeyId"), std::string::npos)
      << listed.status().message();
}

TEST_F(S3LiveTest, MissingBucketIsNotFoundNamingIt) {
  auto s = OpenStorage("s3://no-such-bucket/vm1", gateway_->Options());
  ASSERT_TRUE(s.ok());
  auto exists = (*s)->Exists();
  EXPECT_EQ(exists.status().code(), StatusCode::kNotFound);
  EXPECT_NE(exists.status().message().find("no such bucket"), std::string::npos)
      << exists.status().message();
  EXPECT_NE(exists.status().message().find("s3://no-such-bucket"), std::string::npos);
  EXPECT_EQ((*s)->Stat("vda.full.data").status().code(), StatusCode::kNotFound);
  auto open = (*s)->Open("vda.full.data");
  EXPECT_EQ(open.status().code(), StatusCode::kNotFound);
  EXPECT_NE(open.status().message().find("no such bucket"), std::string::npos)
      << open.status().message();
  EXPECT_EQ((*s)->List().status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*s)->PutText("x", "y").code(), StatusCode::kNotFound);
}

std::optional<S3LockRecord> LockRecord(S3Storage& s) {
  auto body = s.ReadAll(S3Storage::kLockName);
  if (!body.ok()) return std::nullopt;
  return ParseS3Lock(*body);
}

TEST_F(S3LiveTest, LockIsExclusiveNamesItsHolderAndIsReleased) {
  auto s = Saveset();
  EXPECT_FALSE(s->Busy());
  auto first = s->Lock("backupfs-capture");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(s->Busy());
  auto record = LockRecord(*s);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->holder, "backupfs-capture");
  EXPECT_EQ(record->pid, getpid());

  auto other = Saveset();  // another client of the same saveset
  auto second = other->Lock("backupfs-restore consolidate");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  const std::string& m = second.status().message();
  EXPECT_NE(m.find("backupfs-capture"), std::string::npos) << m;
  EXPECT_NE(m.find("pid " + std::to_string(getpid())), std::string::npos) << m;
  EXPECT_NE(m.find("host " + record->host), std::string::npos) << m;
  EXPECT_NE(m.find("s3://live/LockIsExclusiveNamesItsHolderAndIsReleased"), std::string::npos);
  EXPECT_TRUE(s->List()->empty());  // the lock object is not listed

  first->reset();
  EXPECT_FALSE(s->Busy());
  EXPECT_FALSE(s->Stat(S3Storage::kLockName)->has_value());
  auto again = other->Lock("backupfs-restore consolidate");
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST_F(S3LiveTest, ExpiredLockIsTakenOver) {
  auto s = Saveset();
  ASSERT_TRUE(s->PutText(S3Storage::kLockName,
                         "{\"holder\":\"dead\",\"host\":\"gone\",\"pid\":1,"
                         "\"started\":\"2020-01-01T00:00:00Z\","
                         "\"expires\":\"2020-01-01T00:05:00Z\"}")
                  .ok());
  EXPECT_FALSE(s->Busy());
  auto lock = s->Lock("backupfs-capture");
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  auto record = LockRecord(*s);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->holder, "backupfs-capture");
  EXPECT_TRUE(s->Busy());
}

// A lock record of `holder` as this process would write it, with a lease that has minutes
// to run: only its holder's death can free it early.
S3LockRecord LiveRecord(const std::string& holder) {
  S3LockRecord r = ThisProcessLockRecord(holder);
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  r.started_ns = now - 60'000'000'000;
  r.expires_ns = now + 240'000'000'000;
  return r;
}

// The pid of a child that has exited and been reaped: a process that no longer runs.
pid_t DeadPid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

// Takes the lock with stderr captured: the result and what it printed.
std::pair<Result<std::unique_ptr<StorageLock>>, std::string> LockCapturingStderr(S3Storage& s) {
  ::testing::internal::CaptureStderr();
  auto lock = s.Lock("backupfs-capture");
  return {std::move(lock), ::testing::internal::GetCapturedStderr()};
}

TEST_F(S3LiveTest, LockOfADeadHolderOnThisHostIsTakenOverAtOnce) {
  auto s = Saveset();
  S3LockRecord dead = LiveRecord("backupfs-capture -l inc");
  dead.pid = DeadPid();
  dead.pid_start = 12345;
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(dead)).ok());
  EXPECT_EQ(DeadLocalHolder(dead), "pid " + std::to_string(dead.pid) + " is no longer running");
  EXPECT_FALSE(s->Busy());  // a dead holder holds nothing

  auto [lock, err] = LockCapturingStderr(*s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  EXPECT_NE(
      err.find("took over the lock of s3://live/LockOfADeadHolderOnThisHostIsTakenOverAtOnce"),
      std::string::npos)
      << err;
  EXPECT_NE(err.find("its holder backupfs-capture -l inc on this host (" + dead.host),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("pid " + std::to_string(dead.pid) + " is no longer running"),
            std::string::npos)
      << err;
  auto record = LockRecord(*s);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->holder, "backupfs-capture");
  EXPECT_EQ(record->pid, getpid());
  // The new record carries what the next contender needs to judge this holder the same way.
  EXPECT_GT(record->pid_start, 0);
  EXPECT_FALSE(record->boot_id.empty());
  EXPECT_TRUE(record->pid_ns.starts_with("pid:[")) << record->pid_ns;
  EXPECT_EQ(DeadLocalHolder(*record), std::nullopt);  // this process: alive
  EXPECT_TRUE(s->Busy());
}

TEST_F(S3LiveTest, LockOfAReusedPidOrAnEarlierBootIsTakenOverAtOnce) {
  auto s = Saveset();
  // Our own pid, but not our start time: the holder died and the number went to another process.
  S3LockRecord reused = LiveRecord("backupfs-capture");
  reused.pid_start += 1;
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(reused)).ok());
  auto [lock, err] = LockCapturingStderr(*s);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  EXPECT_NE(err.find("that number is now another process's"), std::string::npos) << err;
  lock->reset();

  S3LockRecord before_boot = LiveRecord("backupfs-capture");
  before_boot.boot_id = "00000000-0000-0000-0000-000000000000";
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(before_boot)).ok());
  auto [again, err2] = LockCapturingStderr(*s);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_NE(err2.find("ran before this host last booted"), std::string::npos) << err2;
}

TEST_F(S3LiveTest, LockOfALiveHolderOrOfAnotherHostKeepsItsLease) {
  auto s = Saveset();
  // This very process, as recorded: alive.
  const S3LockRecord alive = LiveRecord("backupfs-capture");
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(alive)).ok());
  EXPECT_TRUE(s->Busy());
  auto lock = s->Lock("backupfs-restore");
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(lock.status().message().find("pid " + std::to_string(getpid())), std::string::npos);

  // A dead pid on another host: this host cannot know, so the lease holds.
  S3LockRecord elsewhere = LiveRecord("backupfs-capture");
  elsewhere.host = "another-hypervisor";
  elsewhere.pid = DeadPid();
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(elsewhere)).ok());
  EXPECT_EQ(DeadLocalHolder(elsewhere), std::nullopt);
  EXPECT_TRUE(s->Busy());
  lock = s->Lock("backupfs-restore");
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(lock.status().message().find("host another-hypervisor"), std::string::npos)
      << lock.status().message();

  // A dead pid of this host's name, but of another PID namespace (a container): the same.
  S3LockRecord other_ns = LiveRecord("backupfs-capture");
  other_ns.pid = DeadPid();
  other_ns.pid_ns = "pid:[1]";
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(other_ns)).ok());
  EXPECT_EQ(DeadLocalHolder(other_ns), std::nullopt);
  EXPECT_EQ(s->Lock("backupfs-restore").status().code(), StatusCode::kFailedPrecondition);

  // An older record without start time, boot or namespace: judged by the pid alone.
  S3LockRecord old_format = LiveRecord("backupfs-capture");
  old_format.pid = DeadPid();
  old_format.pid_start = 0;
  old_format.boot_id.clear();
  old_format.pid_ns.clear();
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(old_format)).ok());
  auto [taken, err] = LockCapturingStderr(*s);
  EXPECT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_NE(err.find("is no longer running"), std::string::npos) << err;
}

TEST_F(S3LiveTest, LockIsRenewedWhileHeld) {
  S3StorageOptions options;
  options.lock_lease = std::chrono::seconds(2);
  options.lock_renew = std::chrono::milliseconds(100);
  auto s = Saveset(options);
  auto lock = s->Lock("backupfs-capture");
  ASSERT_TRUE(lock.ok());
  const int64_t first_expiry = LockRecord(*s)->expires_ns;
  // Renewed: its expiry moves on (to the second, as written), and it stays held past the
  // first lease.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (LockRecord(*s)->expires_ns <= first_expiry + 2'000'000'000 && Clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_GT(LockRecord(*s)->expires_ns, first_expiry + 2'000'000'000);
  EXPECT_EQ(Saveset(options)->Lock("other").status().code(), StatusCode::kFailedPrecondition);
  lock->reset();
  EXPECT_FALSE(s->Busy());
}

TEST_F(S3LiveTest, ALockAnotherRunTookOverIsReportedLostAndLeftToIt) {
  auto s = Saveset();
  auto lock = s->Lock("backupfs-capture");
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  EXPECT_TRUE((*lock)->Held().ok()) << (*lock)->Held().ToString();
  // Another host decided the lease was over (its clock runs ahead) and wrote its own record.
  S3LockRecord other = LiveRecord("backupfs-capture -l inc");
  other.host = "another-hypervisor";
  other.pid = 4242;
  ASSERT_TRUE(s->PutText(S3Storage::kLockName, S3LockJson(other)).ok());
  const Status held = (*lock)->Held();
  EXPECT_EQ(held.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      held.message(),
      "s3://live/ALockAnotherRunTookOverIsReportedLostAndLeftToIt is no longer locked by this "
      "run: another run took over its lock "
      "s3://live/ALockAnotherRunTookOverIsReportedLostAndLeftToIt/.backupfs-lock (now held "
      "by backupfs-capture -l inc on host another-hypervisor, pid 4242)");
  EXPECT_EQ((*lock)->Held().message(), held.message());  // lost stays lost
  lock->reset();
  // Released without deleting the other run's lock.
  auto record = LockRecord(*s);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->host, "another-hypervisor");
}

TEST_F(S3LiveTest, ALockRemovedByAnotherRunIsReportedLost) {
  auto s = Saveset();
  auto lock = s->Lock("backupfs-capture");
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  ASSERT_TRUE(s->Remove(S3Storage::kLockName).ok());
  const Status held = (*lock)->Held();
  EXPECT_EQ(held.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(held.message().find(" is no longer locked by this run: its lock object "
                                "s3://live/ALockRemovedByAnotherRunIsReportedLost/.backupfs-lock "
                                "was removed by another run"),
            std::string::npos)
      << held.message();
}

TEST_F(S3LiveTest, StoppedGatewayFailsWithinBoundsThenRecovers) {
  auto s = Saveset();
  ASSERT_TRUE(s->PutText("f", "before").ok());
  ASSERT_TRUE(gateway_->StopGateway());
  const auto start = Clock::now();
  auto st = s->Stat("f");
  const double took = Seconds(Clock::now() - start);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(st.status().message().find("http://127.0.0.1:" + std::to_string(GatewayPort())),
            std::string::npos)
      << st.status().message();
  EXPECT_NE(st.status().message().find("6 attempts"), std::string::npos) << st.status().message();
  EXPECT_GT(took, 1.0);   // it did back off: 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s, halved at least
  EXPECT_LT(took, 10.0);  // and gave up
  ASSERT_TRUE(gateway_->StartGateway());
  auto after = s->ReadAll("f");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(*after, "before");
}

TEST_F(S3LiveTest, OpenedFilesReadThroughTheCache) {
  S3StorageOptions options;
  ReadCacheOptions cache;
  cache.memory_bytes = 64u << 20;
  options.read_cache = ReadCache::Create(cache);
  auto s = Saveset(options);
  const std::vector<uint8_t> data = RandomBytes(24u << 20, 21);
  ASSERT_TRUE(s->Put("vda.full.data", data).ok());
  auto f = s->Open("vda.full.data");
  ASSERT_TRUE(f.ok());
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<uint8_t> got(data.size());
    for (size_t off = 0; off < got.size(); off += 1u << 20) {
      ASSERT_TRUE((*f)->ReadAt(off, std::span(got).subspan(off, 1u << 20)).ok());
    }
    EXPECT_TRUE(got == data) << "pass " << pass;
  }
  const ReadCache::Stats stats = options.read_cache->stats();
  EXPECT_LE(stats.fetched_bytes, data.size() + (8u << 20)) << "the second pass hit the store";
  EXPECT_GT(stats.memory_hits, 0u);

  // A replaced object: what was fetched stays the old version's, the rest is Stale, and a
  // new open reads the new bytes.
  auto g = s->Open("vda.full.data");
  std::vector<uint8_t> head(4096);
  ASSERT_TRUE((*g)->ReadAt(0, head).ok());
  const std::vector<uint8_t> v2 = RandomBytes(24u << 20, 22);
  ASSERT_TRUE(s->Put("vda.full.data", v2).ok());
  const Status late = (*g)->ReadAt(20u << 20, head);
  if (late.ok()) {
    EXPECT_EQ(0, std::memcmp(head.data(), data.data() + (20u << 20), head.size()));
  } else {
    EXPECT_EQ(late.code(), StatusCode::kStale) << late.ToString();
  }
  auto h = s->Open("vda.full.data");
  ASSERT_TRUE((*h)->ReadAt(0, head).ok());
  EXPECT_EQ(0, std::memcmp(head.data(), v2.data(), head.size()));
}

TEST_F(S3LiveTest, DerivedFilesGoToTheDiskCacheNeverTheBucket) {
  testing::ScratchDir dir;
  auto disk = DiskCache::Open(dir.path() + "/cache", 64u << 20);
  ASSERT_TRUE(disk.ok());
  S3StorageOptions options;
  options.disk_cache = *disk;
  auto s = Saveset(options);
  ASSERT_TRUE(s->PutText("vda.full.data", "data").ok());
  PutOptions derived;
  derived.derived = true;
  ASSERT_TRUE(s->PutText("vda.full.data.idx", "an index", derived).ok());
  EXPECT_FALSE(s->Stat("vda.full.data.idx")->has_value());  // not in the bucket
  EXPECT_EQ(*s->ReadAll("vda.full.data.idx"), "an index");  // but found
  {
    auto w = s->Create("vdb.full.data.idx", derived);
    ASSERT_TRUE((*w)->Append(Bytes("streamed")).ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  EXPECT_EQ(*s->ReadAll("vdb.full.data.idx"), "streamed");
  EXPECT_EQ(Names(*s->List()), std::vector<std::string>{"vda.full.data"});
  // The bucket's own copy wins over the cache's.
  ASSERT_TRUE(s->PutText("vda.full.data.idx", "the sidecar").ok());
  EXPECT_EQ(*s->ReadAll("vda.full.data.idx"), "the sidecar");

  // Without a disk cache a derived file is not kept anywhere (and that is not an error).
  auto bare = Saveset();
  ASSERT_TRUE(bare->PutText("other.idx", "x", derived).ok());
  EXPECT_FALSE(bare->Stat("other.idx")->has_value());
  EXPECT_EQ(bare->ReadAll("other.idx").status().code(), StatusCode::kNotFound);
}

TEST_F(S3LiveTest, OpenStorageBuildsTheCachesFromTheOptions) {
  testing::ScratchDir dir;
  StoreOptions options = gateway_->Options();
  options.cache_dir = dir.path() + "/cache";
  options.cache_dir_bytes = 64u << 20;
  options.memory_cache_bytes = 8u << 20;
  auto s = OpenStorage("s3://live/OpenStorageBuildsTheCachesFromTheOptions/", options);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ((*s)->address(), "s3://live/OpenStorageBuildsTheCachesFromTheOptions/");
  EXPECT_EQ((*s)->Describe("x"), "s3://live/OpenStorageBuildsTheCachesFromTheOptions/x");
  const std::vector<uint8_t> data = RandomBytes(9u << 20, 5);
  ASSERT_TRUE((*s)->Put("vda.full.data", data).ok());
  auto f = (*s)->Open("vda.full.data");
  std::vector<uint8_t> got(data.size());
  ASSERT_TRUE((*f)->ReadAt(0, got).ok());
  EXPECT_TRUE(got == data);
  PutOptions derived;
  derived.derived = true;
  ASSERT_TRUE((*s)->PutText("vda.full.data.idx", "index", derived).ok());

  // A later run finds the index in the same cache directory.
  auto again = OpenStorage("s3://live/OpenStorageBuildsTheCachesFromTheOptions", options);
  EXPECT_EQ(*(*again)->ReadAll("vda.full.data.idx"), "index");
  EXPECT_FALSE((*again)->Stat("vda.full.data.idx")->has_value());
}

TEST_F(S3LiveTest, AddressesWithoutABucketAreRefused) {
  auto s = OpenStorage("s3:///prefix", gateway_->Options());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("s3:///prefix: no bucket name"), std::string::npos);
  auto whole = OpenStorage("s3://live", gateway_->Options());
  ASSERT_TRUE(whole.ok());
  EXPECT_TRUE(*(*whole)->Exists());
}

// Faults injected by tests/integration/s3_fault_proxy.py between the client and the gateway.
class S3FaultTest : public S3LiveTest {
 protected:
  void SetUp() override {
    S3LiveTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    const std::string script = std::string(BFS_SOURCE_DIR) + "/tests/integration/s3_fault_proxy.py";
    if (access(script.c_str(), R_OK) != 0) GTEST_SKIP() << "no " << script;
    proxy_ = std::make_unique<testing::FaultProxy>(script, GatewayPort());
    ASSERT_TRUE(proxy_->ok()) << "the fault proxy did not start";
  }

  // The test's saveset, reached through the proxy.
  std::unique_ptr<S3Storage> ViaProxy(S3StorageOptions options = {}) {
    StoreOptions o = gateway_->Options();
    o.endpoint = proxy_->endpoint();
    auto config = ResolveS3Config(o);
    const std::string prefix = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    return std::make_unique<S3Storage>(std::string("s3://") + kBucket + "/" + prefix, kBucket,
                                       prefix, std::make_shared<S3Client>(*config), options);
  }

  void Inject(std::vector<std::string> rule) {
    ASSERT_NE(proxy_->Command(std::move(rule)), "") << "the fault proxy refused a rule";
  }

  std::vector<std::string> Forwarded();

  std::unique_ptr<testing::FaultProxy> proxy_;
};

// Renewals that fail (the store answers 503 SlowDown to every PUT): once the lease has run out,
// the lock may be another run's, and Held says so even though nobody has taken it.
TEST_F(S3FaultTest, ALockNotRenewedWithinItsLeaseIsReportedLost) {
  S3StorageOptions options;
  options.lock_lease = std::chrono::seconds(2);
  options.lock_renew = std::chrono::milliseconds(200);
  auto s = ViaProxy(options);
  auto lock = s->Lock("backupfs-capture");
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  EXPECT_TRUE((*lock)->Held().ok());  // renewed, within the lease
  Inject({"fail", "status=503", "count=all", "match=PUT"});
  Status held;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while ((held = (*lock)->Held()).ok() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polls a condition
  }
  EXPECT_EQ(held.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(held.message().find("is no longer locked by this run: its lock "
                                "s3://live/ALockNotRenewedWithinItsLeaseIsReportedLost/"
                                ".backupfs-lock was not renewed in time (the lease of 2 s ran out"),
            std::string::npos)
      << held.message();
  Inject({"clear"});
}

// The requests the proxy forwarded since the last call, as "METHOD TARGET" lines.
std::vector<std::string> S3FaultTest::Forwarded() {
  const nlohmann::json stats = nlohmann::json::parse(proxy_->Command({"stats"}), nullptr, false);
  EXPECT_NE(proxy_->Command({"reset"}), "");
  std::vector<std::string> lines;
  if (!stats.is_object() || !stats.contains("recent")) return lines;
  for (const auto& line : stats["recent"]) lines.push_back(line.get<std::string>());
  return lines;
}

// Whether `lines` are requests with these methods in order, each target holding its text.
::testing::AssertionResult RequestsAre(
    const std::vector<std::string>& lines,
    const std::vector<std::pair<std::string, std::string>>& want) {
  std::string all;
  for (const std::string& l : lines) all += "\n  " + l;
  if (lines.size() != want.size()) {
    return ::testing::AssertionFailure()
           << lines.size() << " requests, not " << want.size() << ":" << all;
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!lines[i].starts_with(want[i].first + " ") ||
        lines[i].find(want[i].second) == std::string::npos) {
      return ::testing::AssertionFailure() << "request " << i << " is not " << want[i].first
                                           << " ..." << want[i].second << "...:" << all;
    }
  }
  return ::testing::AssertionSuccess();
}

// A file smaller than a part, committed without a Flush, is one PUT (an empty one too).
TEST_F(S3FaultTest, SmallAndEmptyWritesAreSinglePuts) {
  auto s = ViaProxy();
  Forwarded();
  {
    auto w = s->Create("small");
    ASSERT_TRUE((*w)->Append(Bytes("tiny")).ok());
    ASSERT_TRUE((*w)->Commit().ok());
    EXPECT_FALSE((*w)->Append(Bytes("more")).ok());
  }
  EXPECT_TRUE(RequestsAre(Forwarded(), {{"PUT", "/live/SmallAndEmptyWritesAreSinglePuts/small"}}));
  EXPECT_EQ(*s->ReadAll("small"), "tiny");
  Forwarded();
  {
    auto w = s->Create("empty");
    ASSERT_TRUE((*w)->Commit().ok());
  }
  EXPECT_TRUE(RequestsAre(Forwarded(), {{"PUT", "/live/SmallAndEmptyWritesAreSinglePuts/empty"}}));
  auto st = s->Stat("empty");
  ASSERT_TRUE(st->has_value());
  EXPECT_EQ((*st)->size, 0u);
  EXPECT_TRUE(s->ListPendingUploads()->empty());
}

// A data file is flushed before its sidecars are stored, so its bytes are up before they are:
// even a small one then goes as a multipart upload of one part, completed at Commit.
TEST_F(S3FaultTest, AFlushedSmallWriteIsAnUploadOfOnePart) {
  auto s = ViaProxy();
  Forwarded();
  {
    auto w = s->Create("small");
    ASSERT_TRUE((*w)->Append(Bytes("tiny")).ok());
    ASSERT_TRUE((*w)->Flush().ok());
    EXPECT_TRUE(RequestsAre(
        Forwarded(), {{"POST", "/small?uploads"}, {"PUT", "/small?partNumber=1&uploadId="}}));
    EXPECT_FALSE(s->Stat("small")->has_value());  // not visible before Commit
    Forwarded();
    ASSERT_TRUE((*w)->Commit().ok());
    EXPECT_TRUE(RequestsAre(Forwarded(), {{"POST", "/small?uploadId="}}));
  }
  EXPECT_EQ(*s->ReadAll("small"), "tiny");
  EXPECT_TRUE(s->ListPendingUploads()->empty());
}

TEST_F(S3FaultTest, SlowDownIsRetriedThenSucceeds) {
  auto s = ViaProxy();
  ASSERT_TRUE(s->PutText("f", "bytes").ok());
  Inject({"fail", "status=503", "count=2", "match=GET"});
  auto got = s->ReadAll("f");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, "bytes");
  EXPECT_NE(proxy_->Command({"stats"}).find("\"fail_503\": 2"), std::string::npos)
      << proxy_->Command({"stats"});
}

TEST_F(S3FaultTest, PersistentSlowDownGivesUpNamingTheCode) {
  auto s = ViaProxy();
  ASSERT_TRUE(s->PutText("f", "bytes").ok());
  Inject({"fail", "status=503", "count=all", "match=GET"});
  const auto start = Clock::now();
  auto got = s->ReadAll("f");
  EXPECT_LT(Seconds(Clock::now() - start), 10.0);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  const std::string& m = got.status().message();
  EXPECT_NE(m.find("HTTP 503 SlowDown"), std::string::npos) << m;
  EXPECT_NE(m.find("after 6 attempts"), std::string::npos) << m;
  EXPECT_NE(m.find(proxy_->endpoint()), std::string::npos) << m;
  EXPECT_NE(m.find("s3://live/PersistentSlowDownGivesUpNamingTheCode/f"), std::string::npos);
}

TEST_F(S3FaultTest, CutDownloadsAreRetried) {
  auto s = ViaProxy();
  const std::vector<uint8_t> data = RandomBytes(4u << 20, 9);
  ASSERT_TRUE(s->Put("f", data).ok());
  auto f = s->Open("f");
  ASSERT_TRUE(f.ok());
  for (const char* mode : {"mode=rst", "mode=fin"}) {
    Inject({"cut", "dir=down", "bytes=100000", "count=1", "match=GET", mode});
    std::vector<uint8_t> got(data.size());
    const Status read = (*f)->ReadAt(0, got);
    ASSERT_TRUE(read.ok()) << mode << ": " << read.ToString();
    EXPECT_TRUE(got == data) << mode;
  }
  EXPECT_NE(proxy_->Command({"stats"}).find("\"cut_down\": 2"), std::string::npos)
      << proxy_->Command({"stats"});
}

TEST_F(S3FaultTest, CutPartUploadIsRetried) {
  S3StorageOptions options;
  options.part_bytes = 5u << 20;
  auto s = ViaProxy(options);
  static int run = 0;  // a new object each run (--gtest_repeat)
  const std::string name = "vda.full.data." + std::to_string(run++);
  const std::vector<uint8_t> data = RandomBytes(18u << 20, 4);
  Inject({"cut", "dir=up", "bytes=1000000", "count=2", "match=partNumber="});
  {
    auto w = s->Create(name);
    AppendInPieces(**w, data);
    const Status committed = (*w)->Commit();
    ASSERT_TRUE(committed.ok()) << committed.ToString();
  }
  auto back = s->ReadAll(name);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), data.size());
  for (size_t i = 0; i < data.size(); i += 4096) {
    ASSERT_EQ(0, std::memcmp(back->data() + i, data.data() + i, 4096))
        << "differs at " << i << "; proxy: " << proxy_->Command({"stats"});
  }
  EXPECT_NE(proxy_->Command({"stats"}).find("\"cut_up\": 2"), std::string::npos)
      << proxy_->Command({"stats"});
}

TEST_F(S3FaultTest, UploadThatCannotGetThroughLeavesNoPointAndNoUpload) {
  S3StorageOptions options;
  options.part_bytes = 5u << 20;
  auto s = ViaProxy(options);
  const std::vector<uint8_t> data = RandomBytes(12u << 20, 4);
  Inject({"cut", "dir=up", "bytes=100000", "count=all", "match=partNumber="});
  {
    auto w = s->Create("vda.full.data");
    Status st;
    for (size_t off = 0; off < data.size() && st.ok(); off += 1u << 20) {
      st = (*w)->Append(std::span(data).subspan(off, 1u << 20));
    }
    if (st.ok()) st = (*w)->Commit();
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
    EXPECT_NE(st.message().find("UploadPart"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(proxy_->endpoint()), std::string::npos) << st.message();
  }  // aborted here: the abort itself is not cut
  EXPECT_FALSE(s->Stat("vda.full.data")->has_value());
  EXPECT_TRUE(s->ListPendingUploads()->empty());
}

TEST_F(S3FaultTest, UploadWhoseAbortFailsIsListedForCleanup) {
  S3StorageOptions options;
  options.part_bytes = 5u << 20;
  auto s = ViaProxy(options);
  const std::vector<uint8_t> data = RandomBytes(6u << 20, 4);
  {
    auto w = s->Create("vda.full.data");
    ASSERT_TRUE((*w)->Append(data).ok());  // one part sent: the upload exists
    Inject({"fail", "status=500", "count=all", "match=uploadId="});
  }  // the abort fails: a warning, and the upload stays
  Inject({"clear"});
  auto pending = s->ListPendingUploads();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].name, "vda.full.data");
  ASSERT_EQ(s->RemoveUnfinished()->size(), 1u);
  EXPECT_TRUE(s->ListPendingUploads()->empty());
  EXPECT_FALSE(s->Stat("vda.full.data")->has_value());
}

// Figures for the report: single-stream GET, multipart upload, small ranged GET latency.
TEST_F(S3LiveTest, DISABLED_Measure) {
  auto s = Saveset();
  const std::vector<uint8_t> data = RandomBytes(256u << 20, 11);
  auto t0 = Clock::now();
  {
    auto w = s->Create("big");
    for (size_t off = 0; off < data.size(); off += 1u << 20) {
      ASSERT_TRUE((*w)->Append(std::span(data).subspan(off, 1u << 20)).ok());
    }
    ASSERT_TRUE((*w)->Commit().ok());
  }
  const double upload = Seconds(Clock::now() - t0);
  auto f = s->Open("big");
  ASSERT_TRUE(f.ok());
  std::vector<uint8_t> back(data.size());
  t0 = Clock::now();
  ASSERT_TRUE((*f)->ReadAt(0, back).ok());
  const double get = Seconds(Clock::now() - t0);
  EXPECT_TRUE(back == data);
  std::vector<double> ms;
  std::mt19937_64 rng(5);
  std::vector<uint8_t> small(4096);
  for (int i = 0; i < 200; ++i) {
    const auto t = Clock::now();
    ASSERT_TRUE((*f)->ReadAt((rng() % (data.size() / 4096 - 1)) * 4096, small).ok());
    ms.push_back(Seconds(Clock::now() - t) * 1000);
  }
  std::sort(ms.begin(), ms.end());
  std::printf("[measure] multipart upload 256 MiB (16 MiB parts, 3 threads): %.2f s, %.0f MiB/s\n",
              upload, 256 / upload);
  std::printf("[measure] single-stream GET 256 MiB: %.2f s, %.0f MiB/s\n", get, 256 / get);
  std::printf("[measure] 4 KiB ranged GET: median %.2f ms, p90 %.2f ms, max %.2f ms\n",
              ms[ms.size() / 2], ms[ms.size() * 9 / 10], ms.back());
  ASSERT_TRUE(s->Remove("big").ok());
}

}  // namespace
}  // namespace backupfs
