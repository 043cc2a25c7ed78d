// What the instant-recovery steps share: an instant domain opened by name with its record,
// the QEMU user, the saveset mount under the work directory, and the final cleanup.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "capture/libvirt.h"
#include "common/path_access.h"
#include "common/run_log.h"
#include "restore/instant_record.h"
#include "stream/status.h"

namespace backupfs {

// Steps to take back, newest first, unless the whole operation succeeded.
class Undo {
 public:
  ~Undo() {
    if (committed_) return;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) (*it)();
  }
  void Add(std::function<void()> step) { steps_.push_back(std::move(step)); }
  void Commit() { committed_ = true; }

 private:
  std::vector<std::function<void()>> steps_;
  bool committed_ = false;
};

struct OpenedInstant {
  UniqueConnect conn;
  UniqueDomain dom;
  std::string name;
  InstantRecord record;
};

// The domain `name` and its record. NotFound when no such domain; FailedPrecondition when it
// is not an instant-recovery domain (it has no record: never one, or migrated already).
Result<OpenedInstant> OpenInstant(const std::string& uri, const std::string& name);

// Stores `in.record` in the domain's metadata (persistent and live definitions).
Status SaveRecord(OpenedInstant& in);

// The user QEMU runs as, for permission checks and the mount's file owner; nullopt when
// libvirt runs QEMU as the caller (session daemon).
Result<std::optional<UserIdentity>> QemuIdentity(virConnectPtr conn);

// The mount daemon's log: what the guest's reads met (a corrupt chunk, with file and offset).
// A remote domain's mount is on the backup host, so its log is there too.
inline std::string InstantLogFile(const InstantRecord& record) {
  return (record.served ? record.served->dir : record.workdir) + "/backupfs-instant.log";
}

// Mounts `record.saveset` on `record.mount` for QEMU: allow_other, files owned by its user.
Status MountForQemu(const InstantRecord& record, const std::optional<UserIdentity>& qemu);

// Removes what the record lists in the work directory (overlays, files), unmounts the
// saveset and removes the mount point, and the work directory if that leaves it empty.
// Keeps going past failures; returns the first.
Status RemoveInstantFiles(const InstantRecord& record, bool keep_files, RunLog& log);

}  // namespace backupfs
