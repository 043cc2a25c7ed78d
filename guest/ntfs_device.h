// libntfs-3g's headers (which need the system headers they do not include themselves) and an
// ntfs_device whose operations read a ByteSource: libntfs-3g parses NTFS in-process, read-only,
// without a file descriptor or a block device.
#pragma once

// clang-format off
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
extern "C" {
#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/ntfstime.h>
#include <ntfs-3g/reparse.h>
#include <ntfs-3g/runlist.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>
}
// support.h defines min() and max() as macros, which break std::min and std::max.
#undef min
#undef max
// clang-format on

#include <memory>
#include <string>

#include "guest/byte_source.h"

namespace backupfs {

// What the device operations read; it must outlive the ntfs_device (and its volume).
struct NtfsDeviceState {
  std::shared_ptr<const ByteSource> source;
  int64_t position = 0;    // for seek/read, which libntfs-3g uses at mount
  std::string last_error;  // the ByteSource's message of the last failed read
};

// An ntfs_device not (or no longer) handed to a mounted volume: ntfs_device_free.
struct NtfsDeviceFree {
  void operator()(ntfs_device* dev) const;
};
using NtfsDevicePtr = std::unique_ptr<ntfs_device, NtfsDeviceFree>;

// A device named after the source whose reads go to `state->source`; every write fails with
// EROFS. nullptr (errno set) when libntfs-3g cannot allocate it.
NtfsDevicePtr MakeNtfsDevice(NtfsDeviceState* state);

}  // namespace backupfs
