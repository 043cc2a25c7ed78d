#include "guest/ntfs_device.h"

#include <linux/fs.h>

#include <algorithm>
#include <cstring>
#include <span>

namespace backupfs {

namespace {

NtfsDeviceState* State(ntfs_device* dev) { return static_cast<NtfsDeviceState*>(dev->d_private); }

int DevOpen(ntfs_device* dev, int /*flags*/) {
  if (NDevOpen(dev)) {
    errno = EBUSY;
    return -1;
  }
  NDevSetOpen(dev);
  return 0;
}

int DevClose(ntfs_device* dev) {
  if (!NDevOpen(dev)) {
    errno = EBADF;
    return -1;
  }
  NDevClearOpen(dev);
  return 0;
}

// Reads what lies inside the source: a read reaching past its end is short, as pread(2) on a
// file would be (libntfs-3g reads the backup boot sector at the end of the volume that way).
s64 DevPread(ntfs_device* dev, void* buf, s64 count, s64 offset) {
  NtfsDeviceState* st = State(dev);
  const uint64_t size = st->source->size();
  if (count < 0 || offset < 0) {
    errno = EINVAL;
    return -1;
  }
  if (static_cast<uint64_t>(offset) >= size) return 0;
  const uint64_t n = std::min<uint64_t>(count, size - offset);
  Status s = st->source->ReadAt(offset, std::span<uint8_t>(static_cast<uint8_t*>(buf), n));
  if (!s.ok()) {
    st->last_error = s.message();
    errno = EIO;
    return -1;
  }
  return static_cast<s64>(n);
}

s64 DevSeek(ntfs_device* dev, s64 offset, int whence) {
  NtfsDeviceState* st = State(dev);
  int64_t base = 0;
  switch (whence) {
    case SEEK_SET:
      base = 0;
      break;
    case SEEK_CUR:
      base = st->position;
      break;
    case SEEK_END:
      base = static_cast<int64_t>(st->source->size());
      break;
    default:
      errno = EINVAL;
      return -1;
  }
  if (offset < 0 ? base < -offset : base > INT64_MAX - offset) {
    errno = EINVAL;
    return -1;
  }
  st->position = base + offset;
  return st->position;
}

s64 DevRead(ntfs_device* dev, void* buf, s64 count) {
  s64 n = DevPread(dev, buf, count, State(dev)->position);
  if (n > 0) State(dev)->position += n;
  return n;
}

s64 DevWrite(ntfs_device*, const void*, s64) {
  errno = EROFS;
  return -1;
}

s64 DevPwrite(ntfs_device*, const void*, s64, s64) {
  errno = EROFS;
  return -1;
}

int DevSync(ntfs_device*) {
  errno = EROFS;
  return -1;
}

int DevStat(ntfs_device* dev, struct stat* buf) {
  std::memset(buf, 0, sizeof(*buf));
  buf->st_mode = S_IFREG | 0444;
  buf->st_size = static_cast<off_t>(State(dev)->source->size());
  buf->st_blksize = 4096;
  return 0;
}

int DevIoctl(ntfs_device* dev, unsigned long request, void* argp) {
  switch (request) {
    case BLKGETSIZE64:
      *static_cast<uint64_t*>(argp) = State(dev)->source->size();
      return 0;
    case BLKSSZGET:
      *static_cast<int*>(argp) = 512;
      return 0;
    default:
      errno = ENOTTY;
      return -1;
  }
}

ntfs_device_operations kOps = {DevOpen,  DevClose,  DevSeek, DevRead, DevWrite,
                               DevPread, DevPwrite, DevSync, DevStat, DevIoctl};

}  // namespace

void NtfsDeviceFree::operator()(ntfs_device* dev) const {
  if (NDevOpen(dev)) DevClose(dev);
  ntfs_device_free(dev);
}

NtfsDevicePtr MakeNtfsDevice(NtfsDeviceState* state) {
  // ntfs_device_alloc copies the name; the name is only used in libntfs-3g's messages.
  return NtfsDevicePtr(ntfs_device_alloc(state->source->name().c_str(), 0, &kOps, state));
}

}  // namespace backupfs
