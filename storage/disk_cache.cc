// Entries live in `dir/<xx>/<16 hex digits>.blob`, named by the XXH3-64 of their key (the
// first two digits fan them out over 256 subdirectories, so no directory grows huge). Each
// file is (integers little-endian):
//
//   offset  size  field
//        0     8  magic "BFSDC001"
//        8     4  key length K (at most kMaxKeyBytes)
//       12     4  zero
//       16     8  content length N
//       24     8  XXH3-64 of the content
//       32     K  the key (a hash collision or a foreign file is told apart by it)
//     32+K     N  the content
//
// A file whose size is not 32 + K + N, whose magic or key differ, or whose content does not
// hash to the recorded value is deleted and read as a miss. Entries are not fsynced: after a
// crash, a renamed file whose data never reached the disk fails its checksum like any other
// damage.
//
// The least recently used entries go first when the total passes the bound. Use is ordered
// in memory (a wall clock in nanoseconds that never runs backwards) and written as each
// file's mtime when it is put and on every hit (explicitly: the file system's own timestamps
// can be as coarse as 4 ms), so a scan of the directory (at Open, and again after every
// max_bytes / 8 put) rebuilds the order and counts what other processes sharing the
// directory put there meanwhile. Between scans the total is kept incrementally (each put,
// hit, drop and eviction adjusts it); a scan reads the directory with no lock held and merges
// what it found under the lock.
#include "storage/disk_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "stream/file.h"
#include "stream/xxh3.h"

namespace backupfs {
namespace {

constexpr char kMagic[8] = {'B', 'F', 'S', 'D', 'C', '0', '0', '1'};
constexpr size_t kHeaderBytes = 32;
constexpr size_t kMaxKeyBytes = 4096;
constexpr std::string_view kBlobSuffix = ".blob";
constexpr std::string_view kTempMarker = ".tmp.";
// A temporary file this old was left by a process that died while writing it.
constexpr int64_t kStaleTempNs = int64_t{3600} * 1000000000;

void PutLe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t GetLe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

int64_t RealtimeNs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t MtimeNs(const struct stat& st) {
  return int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
}

// Sets the file's atime and mtime to `ns`, or to now when that is not allowed (the file
// belongs to another user). Best effort: the order only decides what is evicted first.
void SetUseTime(int fd, int64_t ns) {
  const timespec t{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  const timespec times[2] = {t, t};
  if (::futimens(fd, times) == 0) return;
  const timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
  ::futimens(fd, now);
}

// "ab/ab0123456789cdef.blob": where the entry for `key` lives, relative to the directory.
std::string EntryName(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t h = XXH3_64bits(key.data(), key.size());
  std::string hex(16, '0');
  for (int i = 0; i < 16; ++i) hex[i] = kHex[(h >> (60 - 4 * i)) & 0xf];
  return hex.substr(0, 2) + "/" + hex + std::string(kBlobSuffix);
}

bool IsEntryName(std::string_view file) {
  if (file.size() != 16 + kBlobSuffix.size() || !file.ends_with(kBlobSuffix)) return false;
  for (char c : file.substr(0, 16)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Header(std::string_view key, std::span<const uint8_t> bytes) {
  std::string h(kHeaderBytes, '\0');
  auto* p = reinterpret_cast<uint8_t*>(h.data());
  std::memcpy(p, kMagic, sizeof kMagic);
  PutLe(p + 8, key.size(), 4);
  PutLe(p + 16, bytes.size(), 8);
  PutLe(p + 24, XXH3_64bits(bytes.data(), bytes.size()), 8);
  h.append(key);
  return h;
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

// Why an entry's file cannot be used; empty when it can.
std::string CheckEntry(int fd, uint64_t file_size, std::string_view key, uint64_t max_bytes,
                       std::string& content, const std::string& path) {
  uint8_t h[kHeaderBytes];
  if (file_size < kHeaderBytes) return "shorter than its header";
  if (!PreadExact(fd, h, 0, path).ok()) return "header unreadable";
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) return "bad magic";
  const uint64_t key_len = GetLe(h + 8, 4), len = GetLe(h + 16, 8), sum = GetLe(h + 24, 8);
  if (key_len > kMaxKeyBytes || GetLe(h + 12, 4) != 0) return "bad header";
  if (len > max_bytes || file_size != kHeaderBytes + key_len + len) return "wrong length";
  std::string stored_key(key_len, '\0');
  if (!PreadExact(fd, std::span(reinterpret_cast<uint8_t*>(stored_key.data()), key_len),
                  kHeaderBytes, path)
           .ok()) {
    return "key unreadable";
  }
  if (stored_key != key) return "another key";
  content.resize(len);
  auto out = std::span(reinterpret_cast<uint8_t*>(content.data()), len);
  if (!PreadExact(fd, out, kHeaderBytes + key_len, path).ok()) return "content unreadable";
  if (XXH3_64bits(out.data(), out.size()) != sum) return "checksum mismatch";
  return "";
}

class DiskCacheImpl final : public DiskCache {
 public:
  DiskCacheImpl(std::string dir, uint64_t max_bytes) : dir_(std::move(dir)), max_(max_bytes) {}

  // Reads what the directory holds and trims it to the bound.
  void Init() EXCLUDES(mu_) {
    Found found = ScanDir();
    MutexLock lock(mu_);
    MergeLocked(std::move(found), 0);
    EvictLocked();
  }

  Result<std::optional<std::string>> Get(std::string_view key) override EXCLUDES(mu_);
  Status Put(std::string_view key, std::span<const uint8_t> bytes) override EXCLUDES(mu_);
  const std::string& dir() const override { return dir_; }

 private:
  struct Entry {
    uint64_t bytes = 0;
    int64_t used_ns = 0;
  };

  std::string PathOf(const std::string& name) const { return dir_ + "/" + name; }
  // Deletes the entry file open as `fd` (unless another process has replaced it meanwhile).
  void Drop(const std::string& name, int fd) EXCLUDES(mu_);
  // A use time later than every earlier one, close to the wall clock (files' mtimes are).
  int64_t NowLocked() REQUIRES(mu_);
  void RecordLocked(const std::string& name, uint64_t bytes, int64_t used_ns) REQUIRES(mu_);
  void ForgetLocked(const std::string& name) REQUIRES(mu_);
  // Entry name -> its file's size and mtime, as a scan of the directory found them.
  using Found = std::unordered_map<std::string, Entry>;
  // Reads the directory with no lock held (it may hold thousands of entries, and Put runs on
  // readers' threads); deletes temporary files left by dead writers.
  Found ScanDir() const;
  void ScanSubdir(const std::string& sub, int64_t now_ns, Found* found) const;
  // What is known becomes what the scan found (counting what other processes put, and
  // forgetting what they evicted), with two exceptions: a use seen here later than a file's
  // mtime is kept, and an entry recorded here after `since_ns` (put or hit while the scan ran,
  // perhaps after it passed that entry's subdirectory) is kept as recorded.
  void MergeLocked(Found found, int64_t since_ns) REQUIRES(mu_);
  // Rescans after every max_ / 8 bytes put, one scan at a time, outside the lock.
  void RescanIfDue() EXCLUDES(mu_);
  void EvictLocked() REQUIRES(mu_);
  Status WriteTemp(const std::string& temp, std::string_view key, std::span<const uint8_t> bytes,
                   int64_t used_ns) const;

  const std::string dir_;
  const uint64_t max_;
  std::atomic<uint64_t> temp_counter_{0};
  Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);    // by EntryName
  std::set<std::pair<int64_t, std::string>> by_use_ GUARDED_BY(mu_);  // least recent first
  uint64_t bytes_ GUARDED_BY(mu_) = 0;                                // file sizes of entries_
  uint64_t put_since_scan_ GUARDED_BY(mu_) = 0;
  bool scanning_ GUARDED_BY(mu_) = false;
  int64_t last_use_ns_ GUARDED_BY(mu_) = 0;
};

int64_t DiskCacheImpl::NowLocked() {
  last_use_ns_ = std::max(last_use_ns_ + 1, RealtimeNs());
  return last_use_ns_;
}

void DiskCacheImpl::RecordLocked(const std::string& name, uint64_t bytes, int64_t used_ns) {
  ForgetLocked(name);
  entries_.emplace(name, Entry{bytes, used_ns});
  by_use_.emplace(used_ns, name);
  bytes_ += bytes;
}

void DiskCacheImpl::ForgetLocked(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  by_use_.erase({it->second.used_ns, name});
  bytes_ -= it->second.bytes;
  entries_.erase(it);
}

DiskCacheImpl::Found DiskCacheImpl::ScanDir() const {
  Found found;
  UniqueDir top(::opendir(dir_.c_str()));
  if (!top) return found;  // nothing kept (the next Put reports what is wrong with the directory)
  const int64_t now_ns = RealtimeNs();
  while (const dirent* d = ::readdir(top.get())) {
    const std::string_view sub = d->d_name;
    if (sub.size() == 2 && sub != "..") ScanSubdir(std::string(sub), now_ns, &found);
  }
  return found;
}

void DiskCacheImpl::ScanSubdir(const std::string& sub, int64_t now_ns, Found* found) const {
  UniqueDir dir(::opendir(PathOf(sub).c_str()));
  if (!dir) return;
  while (const dirent* d = ::readdir(dir.get())) {
    const std::string_view file = d->d_name;
    const bool entry = IsEntryName(file);
    const bool temp = file.find(kTempMarker) != std::string_view::npos;
    struct stat st;
    if ((!entry && !temp) || ::fstatat(::dirfd(dir.get()), d->d_name, &st, 0) != 0) continue;
    if (entry && S_ISREG(st.st_mode)) {
      (*found)[sub + "/" + std::string(file)] =
          Entry{static_cast<uint64_t>(st.st_size), MtimeNs(st)};
    } else if (temp && now_ns - MtimeNs(st) > kStaleTempNs) {
      ::unlinkat(::dirfd(dir.get()), d->d_name, 0);
    }
  }
}

void DiskCacheImpl::MergeLocked(Found found, int64_t since_ns) {
  std::unordered_map<std::string, Entry> known;
  known.swap(entries_);
  by_use_.clear();
  bytes_ = 0;
  for (const auto& [name, seen] : found) {
    auto it = known.find(name);
    if (it != known.end() && it->second.used_ns > since_ns) continue;  // recorded below
    const int64_t used = std::max(seen.used_ns, it == known.end() ? 0 : it->second.used_ns);
    RecordLocked(name, seen.bytes, used);
    last_use_ns_ = std::max(last_use_ns_, used);
  }
  for (const auto& [name, e] : known) {
    if (e.used_ns > since_ns) RecordLocked(name, e.bytes, e.used_ns);
  }
}

void DiskCacheImpl::RescanIfDue() {
  int64_t since;
  {
    MutexLock lock(mu_);
    if (scanning_ || put_since_scan_ < max_ / 8) return;
    scanning_ = true;
    put_since_scan_ = 0;
    since = NowLocked();
  }
  Found found = ScanDir();
  MutexLock lock(mu_);
  MergeLocked(std::move(found), since);
  scanning_ = false;
  EvictLocked();
}

void DiskCacheImpl::EvictLocked() {
  while (bytes_ > max_ && !by_use_.empty()) {
    const std::string name = by_use_.begin()->second;
    ::unlink(PathOf(name).c_str());  // ENOENT: another process evicted it first
    ForgetLocked(name);
  }
}

void DiskCacheImpl::Drop(const std::string& name, int fd) {
  struct stat open_st, path_st;
  const std::string path = PathOf(name);
  if (::fstat(fd, &open_st) == 0 && ::stat(path.c_str(), &path_st) == 0 &&
      open_st.st_ino == path_st.st_ino && open_st.st_dev == path_st.st_dev) {
    ::unlink(path.c_str());
  }
  MutexLock lock(mu_);
  ForgetLocked(name);
}

Result<std::optional<std::string>> DiskCacheImpl::Get(std::string_view key) {
  const std::string name = EntryName(key);
  const std::string path = PathOf(name);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    if (err != ENOENT) return Status::FromErrno("disk cache: cannot open " + path, err);
    MutexLock lock(mu_);
    ForgetLocked(name);  // evicted by another process, if it was known
    return std::optional<std::string>();
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return Status::FromErrno("disk cache: cannot stat " + path, errno);
  std::string content;
  if (!CheckEntry(fd.get(), static_cast<uint64_t>(st.st_size), key, max_, content, path).empty()) {
    Drop(name, fd.get());
    return std::optional<std::string>();
  }
  MutexLock lock(mu_);
  const int64_t used = NowLocked();
  SetUseTime(fd.get(), used);  // for the order a later scan (here or elsewhere) rebuilds
  RecordLocked(name, static_cast<uint64_t>(st.st_size), used);
  return std::optional<std::string>(std::move(content));
}

Status DiskCacheImpl::WriteTemp(const std::string& temp, std::string_view key,
                                std::span<const uint8_t> bytes, int64_t used_ns) const {
  BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(temp, O_WRONLY | O_CREAT | O_EXCL, 0644));
  const std::string header = Header(key, bytes);
  BFS_RETURN_IF_ERROR(WriteAll(
      fd.get(), std::span(reinterpret_cast<const uint8_t*>(header.data()), header.size()), temp));
  BFS_RETURN_IF_ERROR(WriteAll(fd.get(), bytes, temp));
  SetUseTime(fd.get(), used_ns);  // after the writes, which set the mtime themselves
  return Status::Ok();
}

Status DiskCacheImpl::Put(std::string_view key, std::span<const uint8_t> bytes) {
  const uint64_t file_bytes = kHeaderBytes + key.size() + bytes.size();
  if (key.size() > kMaxKeyBytes || file_bytes > max_) {
    return Status::InvalidArgument("disk cache " + dir_ + ": an entry of " +
                                   std::to_string(file_bytes) + " bytes (key " +
                                   std::to_string(key.size()) + ") does not fit its bound of " +
                                   std::to_string(max_) + " bytes");
  }
  const std::string name = EntryName(key);
  const std::string path = PathOf(name);
  const std::string sub = PathOf(name.substr(0, 2));
  if (::mkdir(sub.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno("disk cache: cannot create " + sub, errno);
  }
  const std::string temp = path + std::string(kTempMarker) + std::to_string(::getpid()) + "." +
                           std::to_string(temp_counter_++);
  int64_t used;
  {
    MutexLock lock(mu_);
    used = NowLocked();
  }
  Status s = WriteTemp(temp, key, bytes, used);
  if (s.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    s = Status::FromErrno("disk cache: cannot rename " + temp + " to " + path, errno);
  }
  if (!s.ok()) {
    ::unlink(temp.c_str());
    return s;
  }
  {
    MutexLock lock(mu_);
    RecordLocked(name, file_bytes, used);
    put_since_scan_ += file_bytes;
    EvictLocked();
  }
  RescanIfDue();  // counts what other processes put
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<DiskCache>> DiskCache::Open(const std::string& dir, uint64_t max_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("disk cache: cannot create " + dir + ": " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) {
    return Status::InvalidArgument("disk cache: " + dir + " is not a directory");
  }
  auto cache = std::make_shared<DiskCacheImpl>(dir, max_bytes);
  cache->Init();
  return std::shared_ptr<DiskCache>(std::move(cache));
}

}  // namespace backupfs
