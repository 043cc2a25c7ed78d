// Internal to the NTFS reader: symlink targets (Interix symlinks and reparse points) and the
// user.<stream> xattrs of named data streams, as ntfs-3g's readlink and listxattr show them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "guest/ntfs_volume.h"

namespace backupfs::ntfs {

// The target of a reparse point as ntfs-3g shows it (ntfs_make_symlink), with an absolute
// result made relative to the link's directory so that it stays inside the guest tree.
Result<std::string> ReparseTarget(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu);

// The target of symlink `ino` (a reparse point or an Interix symlink); InvalidArgument when
// it is not a symlink.
Result<std::string> LinkTarget(Volume& v, uint64_t ino, const LogCapture& log) REQUIRES(v.mu);

// The named data streams of `ino` as user.<name> xattrs, where ntfs-3g allows user xattrs.
Result<std::vector<std::pair<std::string, std::string>>> StreamXattrs(Volume& v, uint64_t ino,
                                                                      const LogCapture& log)
    REQUIRES(v.mu);

}  // namespace backupfs::ntfs
