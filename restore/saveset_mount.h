// A saveset mounted by the backupfs daemon for other programs to read: QEMU (instant
// recovery), qemu-nbd (export). The daemon runs detached from us, so that a mount under a
// running domain outlives the command that made it; these functions start it, find it again
// (libmount) and end it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "storage/open_storage.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

// How the daemon is to find `saveset`: a local directory as an absolute path (the daemon runs
// elsewhere), a store by its address (s3://bucket/prefix; read with MountStoreOptions, the keys
// found in the environment it inherits or the profile).
std::string MountAddress(const Storage& saveset);

// How the daemon is to read `saveset` when it is a store: with the settings it was opened with
// (`options`), as backupfs options; "" for a local directory.
std::string MountStoreOptions(const Storage& saveset, const StoreOptions& options);

struct SavesetMountOptions {
  std::string saveset;     // MountAddress() of the saveset
  std::string mountpoint;  // an existing empty directory
  // Let other users (the QEMU user) in, with every file owned by `owner`.
  bool allow_other = false;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  // For a store: the settings it is read with, as backupfs options (MountOptionsOf).
  std::string store_options;
  // The daemon's messages (a corrupt chunk a reader met, with file and offset) are appended
  // here; "" sends them to syslog.
  std::string log_file;
};

// Runs the backupfs program (the one beside this executable, else the one in PATH) and
// returns once the mount is up; an error quotes the daemon's complaint.
Status MountSaveset(const SavesetMountOptions& options);

enum class MountState {
  kAbsent,   // nothing mounted there
  kServing,  // a backupfs mount that answers
  kStale,    // a backupfs mount whose daemon is gone (reads fail: ENOTCONN)
};
const char* MountStateName(MountState s);
Result<MountState> ProbeMount(const std::string& mountpoint);

// Unmounts (lazily when the daemon is gone or a file is still open); the daemon then exits.
Status UnmountSaveset(const std::string& mountpoint);

// The mount points of every backupfs mount of this host (from /proc/self/mountinfo).
Result<std::vector<std::string>> BackupfsMounts();

}  // namespace backupfs
