// Internal to the NTFS reader: an open regular file, read through its unnamed data attribute,
// with its holes for SEEK_DATA / SEEK_HOLE.
#pragma once

#include <cstdint>
#include <memory>

#include "guest/guest_fs.h"
#include "guest/ntfs_volume.h"

namespace backupfs::ntfs {

// Opens `ino` for reading; InvalidArgument for a directory or a reparse point.
Result<std::shared_ptr<const GuestFile>> OpenFile(const std::shared_ptr<Volume>& v, uint64_t ino,
                                                  const LogCapture& log) REQUIRES(v->mu);

}  // namespace backupfs::ntfs
