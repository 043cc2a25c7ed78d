#include "restore/instant_domain.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "capture/libvirt_instant.h"
#include "restore/saveset_mount.h"

namespace backupfs {

namespace fs = std::filesystem;

Result<OpenedInstant> OpenInstant(const std::string& uri, const std::string& name) {
  SilenceLibvirtErrors();
  OpenedInstant in;
  in.name = name;
  BFS_ASSIGN_OR_RETURN(in.conn, ConnectLibvirt(uri));
  BFS_ASSIGN_OR_RETURN(in.dom, LookupDomain(in.conn.get(), name));
  BFS_ASSIGN_OR_RETURN(std::optional<std::string> xml,
                       DomainMetadata(in.dom.get(), name, kInstantNamespace));
  if (!xml) {
    return Status::FailedPrecondition(
        "domain " + name +
        " is not an instant-recovery domain (no backupfs record in its metadata: never one, "
        "or migrated off its backup already)");
  }
  BFS_ASSIGN_OR_RETURN(in.record, ParseInstantRecord(*xml, "domain " + name));
  return in;
}

Status SaveRecord(OpenedInstant& in) {
  return SetDomainMetadata(in.dom.get(), in.name, kInstantNamespace, kInstantPrefix,
                           InstantRecordXml(in.record));
}

Result<std::optional<UserIdentity>> QemuIdentity(virConnectPtr conn) {
  BFS_ASSIGN_OR_RETURN(std::optional<QemuProcessUser> user, QemuUser(conn));
  if (!user) return std::optional<UserIdentity>();
  return std::optional<UserIdentity>(LookupUserIdentity(user->uid, user->gid));
}

Status MountForQemu(const InstantRecord& record, const std::optional<UserIdentity>& qemu) {
  SavesetMountOptions m;
  m.saveset = record.saveset;
  m.store_options = record.store_options;
  m.mountpoint = record.mount;
  m.log_file = InstantLogFile(record);
  if (qemu) {
    m.allow_other = true;
    m.uid = qemu->uid;
    m.gid = qemu->gid;
  }
  return MountSaveset(m);
}

Status RemoveInstantFiles(const InstantRecord& record, bool keep_files, RunLog& log) {
  Status first = Status::Ok();
  auto note = [&](Status s) {
    if (s.ok()) return;
    log.Error(s.message());
    if (first.ok()) first = s;
  };
  for (const InstantDisk& d : record.disks) {
    if (unlink(d.overlay.c_str()) != 0 && errno != ENOENT) {
      note(Status::FromErrno("cannot remove the overlay " + d.overlay, errno));
    }
  }
  if (!keep_files) {
    for (const std::string& f : record.files) {
      if (unlink(f.c_str()) != 0 && errno != ENOENT) {
        note(Status::FromErrno("cannot remove " + f, errno));
      }
    }
  }
  Result<MountState> state = ProbeMount(record.mount);
  if (!state.ok()) {
    note(state.status());
  } else if (*state != MountState::kAbsent) {
    note(UnmountSaveset(record.mount));
  }
  unlink(InstantLogFile(record).c_str());
  if (rmdir(record.mount.c_str()) != 0 && errno != ENOENT) {
    note(Status::FromErrno("cannot remove the mount point " + record.mount, errno));
  }
  // Only when nothing else is in it: the admin may keep other files there.
  if (rmdir(record.workdir.c_str()) == 0) {
    log.Info("removed the work directory " + record.workdir);
  }
  return first;
}

}  // namespace backupfs
