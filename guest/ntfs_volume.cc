#include "guest/ntfs_volume.h"

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <mutex>

namespace backupfs::ntfs {
namespace {

constexpr size_t kOpenAttrs = 16;  // data attributes kept open for reads
constexpr size_t kMaxLog = 2048;

// --- libntfs-3g's log, kept off stderr --------------------------------------------------------

thread_local std::string* tl_log = nullptr;

int LogToBuffer(const char*, const char*, int, u32, void*, const char* format, va_list args) {
  if (tl_log == nullptr || tl_log->size() >= kMaxLog) return 0;
  char line[512];
  vsnprintf(line, sizeof(line), format, args);
  std::string s(line);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (!tl_log->empty()) *tl_log += "; ";
  *tl_log += s;
  return 0;
}

void RouteLogOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    ntfs_log_set_handler(LogToBuffer);
    ntfs_log_clear_levels(UINT32_MAX);
    ntfs_log_set_levels(NTFS_LOG_LEVEL_WARNING | NTFS_LOG_LEVEL_ERROR | NTFS_LOG_LEVEL_PERROR |
                        NTFS_LOG_LEVEL_CRITICAL);
  });
}

}  // namespace

LogCapture::LogCapture() : prev_(tl_log) { tl_log = &text_; }
LogCapture::~LogCapture() { tl_log = prev_; }

// --- the volume -------------------------------------------------------------------------------

Volume::~Volume() {
  MutexLock l(mu);
  open_.clear();
  if (vol != nullptr) ntfs_umount(vol, FALSE);  // frees the device too
}

Status Volume::Error(uint64_t ino, const std::string& what, int err, const LogCapture& log) {
  std::string msg = name() + ": ";
  if (ino != kWholeVolume) msg += "MFT record " + std::to_string(ino) + ": ";
  msg += what;
  if (err == EIO && !device_.last_error.empty()) {
    msg += ": " + device_.last_error;
    device_.last_error.clear();
    return Status::IOError(msg);
  }
  if (err != 0) msg += std::string(": ") + strerror(err);
  if (!log.text().empty()) msg += " (libntfs-3g: " + log.text() + ")";
  return Status::Corruption(msg);
}

Result<InodePtr> Volume::OpenInode(uint64_t ino, const LogCapture& log) {
  if (ino > MFT_REF_MASK_CPU)
    return Status::NotFound(name() + ": no MFT record " + std::to_string(ino));
  errno = 0;
  InodePtr ni(ntfs_inode_open(vol, static_cast<MFT_REF>(ino)));
  if (!ni) return Error(ino, "cannot open the inode", errno, log);
  return ni;
}

Result<ntfs_attr*> Volume::DataAttr(uint64_t ino, const LogCapture& log) {
  ++clock_;
  for (OpenData& d : open_) {
    if (d.ino == ino) {
      d.last_use = clock_;
      return d.na.get();
    }
  }
  BFS_ASSIGN_OR_RETURN(InodePtr ni, OpenInode(ino, log));
  errno = 0;
  AttrPtr na(ntfs_attr_open(ni.get(), AT_DATA, AT_UNNAMED, 0));
  if (!na) return Error(ino, "cannot open the data attribute", errno, log);
  if (open_.size() >= kOpenAttrs) {
    auto oldest = std::min_element(open_.begin(), open_.end(),
                                   [](auto& a, auto& b) { return a.last_use < b.last_use; });
    open_.erase(oldest);
  }
  open_.push_back(OpenData{std::move(ni), std::move(na), ino, clock_});
  return open_.back().na.get();
}

void Volume::Note(std::string note) {
  if (notes.size() < 64) notes.push_back(std::move(note));
}

Result<std::shared_ptr<Volume>> MountVolume(std::shared_ptr<const ByteSource> source) {
  RouteLogOnce();
  auto vol = std::make_shared<Volume>(std::move(source));
  LogCapture log;
  MutexLock l(vol->mu);
  NtfsDevicePtr dev = MakeNtfsDevice(vol->device());
  if (!dev) return Status::FromErrno(vol->name() + ": cannot allocate an ntfs device", errno);
  // Read-only: libntfs-3g then neither checks nor resets $LogFile nor refuses a hibernated
  // volume (ntfs-3g -o ro passes the same), so such a volume is shown as last written.
  errno = 0;
  vol->vol = ntfs_device_mount(dev.get(), NTFS_MNT_RDONLY);
  if (vol->vol == nullptr) {
    return vol->Error(kWholeVolume, "cannot mount as NTFS", errno, log);
  }
  dev.release();  // the volume owns it now: ntfs_umount frees it
  if (ntfs_set_shown_files(vol->vol, FALSE, TRUE, FALSE)) {
    return vol->Error(FILE_root, "cannot set the files shown", errno, log);
  }
  if (vol->vol->flags & VOLUME_IS_DIRTY) {
    vol->Note(vol->name() +
              ": NTFS volume marked dirty (not cleanly unmounted); shown as last "
              "written, $LogFile not replayed");
  }
  if (ntfs_volume_check_hiberfile(vol->vol, 0) < 0) {
    vol->Note(vol->name() +
              ": Windows is hibernated or fast-started on this NTFS volume; shown as "
              "last written, without what the hibernation file holds");
  }
  return vol;
}

Result<std::vector<uint8_t>> ReadSmall(Volume& v, ntfs_attr* na, uint64_t ino, int64_t limit,
                                       const LogCapture& log) {
  if (na->data_size < 0 || na->data_size > limit) {
    return Status::Corruption(v.name() + ": MFT record " + std::to_string(ino) + ": a value of " +
                              std::to_string(na->data_size) + " bytes (at most " +
                              std::to_string(limit) + " expected)");
  }
  std::vector<uint8_t> buf(na->data_size);
  errno = 0;
  if (!buf.empty() && ntfs_attr_pread(na, 0, na->data_size, buf.data()) != na->data_size) {
    return v.Error(ino, "cannot read the attribute", errno, log);
  }
  return buf;
}

}  // namespace backupfs::ntfs
