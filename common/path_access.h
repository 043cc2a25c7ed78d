// Whether another user (the one QEMU runs as) can reach a path we create files under: every
// directory from / down must grant it search permission. Checked before anything is made, so
// that a work directory QEMU cannot use is refused with the directory at fault named, instead
// of a domain that fails to start with "Permission denied" on an overlay.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

struct UserIdentity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups
};

// The user with `uid`, its primary group `gid` and its supplementary groups (from the group
// database; none when the uid has no passwd entry).
UserIdentity LookupUserIdentity(uid_t uid, gid_t gid);

// Ok when `user` may search every directory on the way to `path` (an existing directory) and
// `path` itself. POSIX mode bits only (ACLs, SELinux and AppArmor are not read). Root passes.
// A FailedPrecondition names the first directory that stops it.
Status CheckUserCanReach(const std::string& path, const UserIdentity& user, const std::string& who);

}  // namespace backupfs
