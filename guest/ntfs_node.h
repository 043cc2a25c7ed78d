// Internal to the NTFS reader: what an MFT record is (its type, attributes, Interix special
// file) and the entries of a directory, as ntfs-3g's getattr and readdir show them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "guest/guest_fs.h"
#include "guest/ntfs_volume.h"

namespace backupfs::ntfs {

// A name stored as `len` UTF-16 units, in UTF-8; Corruption when it is not valid UTF-16.
Result<std::string> ToUtf8(const ntfschar* name, int len);
// As ToUtf8, into *out (GCC 12 sees a Result<std::string> as maybe uninitialized in a loop).
Status ToUtf8Into(const ntfschar* name, int len, std::string* out);

inline bool IsDir(const ntfs_inode* ni) { return (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) != 0; }
inline bool IsReparse(const ntfs_inode* ni) { return (ni->flags & FILE_ATTR_REPARSE_POINT) != 0; }

// What a file with the system attribute is: an Interix symlink, device, FIFO or socket (what
// ntfs-3g creates for ln -s, mknod, mkfifo), or a plain file.
struct Interix {
  mode_t type = S_IFREG;
  uint64_t rdev = 0;
  std::string target;  // S_IFLNK
};

// The type of a file with the system attribute, as ntfs-3g's getattr derives it.
Result<Interix> ReadInterix(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu);

// The attributes of `ni` (see ntfs_fs.cc for the owner, mode and nlink shown).
Result<GuestAttr> StatNode(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu);

// The entries of directory `ino`, without ".", "..", DOS 8.3 aliases, and names that cannot
// be a path component (those are counted in a note).
Result<std::vector<GuestDirEntry>> ReadDirectory(Volume& v, uint64_t ino, const LogCapture& log)
    REQUIRES(v.mu);

}  // namespace backupfs::ntfs
