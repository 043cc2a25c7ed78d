#include "restore/instant.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <functional>
#include <map>

#include "backupfs/saveset.h"
#include "capture/libvirt_instant.h"
#include "common/command_line.h"
#include "common/domain_xml.h"
#include "common/host.h"
#include "common/subprocess.h"
#include "common/vmconfig_adjust.h"
#include "restore/instant_domain.h"
#include "restore/instant_remote.h"
#include "restore/plan.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

std::string Absolute(const std::string& path) {
  return fs::absolute(path).lexically_normal().string();
}

Status Interrupted(const std::atomic<bool>& stop) {
  return stop.load() ? Status::Cancelled("interrupted: what was made so far is removed")
                     : Status::Ok();
}

class Instant {
 public:
  Instant(const InstantOptions& o, RunLog& log, std::atomic<bool>& stop)
      : o_(o), log_(log), stop_(stop) {}

  Result<InstantSummary> Run() {
    BFS_RETURN_IF_ERROR(PrepareWorkdir());
    BFS_RETURN_IF_ERROR(PlanPoint());
    BFS_RETURN_IF_ERROR(CheckName());
    BFS_RETURN_IF_ERROR(Mount());
    BFS_RETURN_IF_ERROR(Interrupted(stop_));
    BFS_RETURN_IF_ERROR(CreateOverlays());
    BFS_RETURN_IF_ERROR(CopyBootFiles());
    BFS_RETURN_IF_ERROR(Interrupted(stop_));
    BFS_RETURN_IF_ERROR(DefineAndStart());
    undo_.Commit();
    return std::move(summary_);
  }

 private:
  Status PrepareWorkdir() {
    workdir_ = Absolute(o_.workdir);
    std::error_code ec;
    if (!fs::exists(workdir_, ec)) {
      if (mkdir(workdir_.c_str(), 0755) != 0) {
        return Status::FromErrno("cannot create the work directory " + workdir_, errno);
      }
      const std::string dir = workdir_;
      undo_.Add([dir] { rmdir(dir.c_str()); });
    } else if (!fs::is_directory(workdir_, ec)) {
      return Status::InvalidArgument(workdir_ + " is not a directory");
    }
    return Status::Ok();
  }

  Status PlanPoint() {
    RestoreOptions r;
    r.input = o_.input;
    r.saveset = SavesetStorage(o_.saveset, o_.input);
    r.output = workdir_;
    r.until = o_.until;
    r.disk = o_.disk;
    r.format = OutputFormat::kQcow2;  // the overlays
    r.adjust_config = true;
    r.name = o_.name;
    BFS_ASSIGN_OR_RETURN(SavesetModel model, LoadSaveset(r.saveset, OpenOptions()));
    for (const std::string& p : model.problems) log_.Warn(p);
    BFS_ASSIGN_OR_RETURN(plan_, PlanRestore(model, r));
    for (const std::string& w : plan_.warnings) log_.Warn(w);
    if (plan_.vmconfig_xml.empty()) {
      return Status::NotFound("restore point " + plan_.point + " of " + o_.input +
                              " has no saved domain XML (vmconfig.*.xml): nothing to define");
    }
    summary_.point = plan_.point;
    record_.saveset = MountAddress(*r.saveset);
    record_.store_options = MountStoreOptions(*r.saveset, o_.store);
    record_.point = plan_.point;
    record_.workdir = workdir_;
    record_.mount = workdir_ + "/" + kInstantMountName;
    return Status::Ok();
  }

  Status CheckName() {
    BFS_ASSIGN_OR_RETURN(std::string original,
                         ParseDomainName(plan_.vmconfig_xml, plan_.vmconfig_path));
    name_ = o_.name.empty() ? DefaultRestoredName(original) : o_.name;
    SilenceLibvirtErrors();
    BFS_ASSIGN_OR_RETURN(conn_, ConnectLibvirt(o_.uri));
    BFS_RETURN_IF_ERROR(RequireNameFree(conn_.get(), name_));
    BFS_ASSIGN_OR_RETURN(qemu_, QemuIdentity(conn_.get()));
    if (qemu_) BFS_RETURN_IF_ERROR(CheckUserCanReach(workdir_, *qemu_, "the QEMU user"));
    summary_.name = name_;
    return Status::Ok();
  }

  Status Mount() {
    const std::string mnt = record_.mount;
    BFS_ASSIGN_OR_RETURN(MountState state, ProbeMount(mnt));
    if (state != MountState::kAbsent) {
      return Status::FailedPrecondition(mnt + " is mounted already (" + MountStateName(state) +
                                        "): another instant domain uses " + workdir_);
    }
    if (mkdir(mnt.c_str(), 0755) != 0) {
      return Status::FromErrno("cannot create the mount point " + mnt, errno);
    }
    undo_.Add([mnt] { rmdir(mnt.c_str()); });
    const std::string log = InstantLogFile(record_);
    undo_.Add([log] { unlink(log.c_str()); });
    BFS_RETURN_IF_ERROR(MountForQemu(record_, qemu_));
    undo_.Add([mnt] { (void)UnmountSaveset(mnt); });
    log_.Info("saveset " + record_.saveset + " mounted on " + mnt + " (its log: " + log + ")");
    return Status::Ok();
  }

  Status CreateOverlays() {
    for (const DiskPlan& d : plan_.disks) {
      InstantDisk disk;
      disk.target = d.disk;
      disk.overlay = Absolute(d.target);
      disk.backing = record_.mount + "/" + plan_.point + "/" + d.disk + ".raw";
      struct stat st;
      if (stat(disk.backing.c_str(), &st) != 0) {
        return Status::FromErrno("disk " + d.disk + ": the mount shows no " + disk.backing, errno);
      }
      auto made = RunCapture({"qemu-img", "create", "-q", "-f", "qcow2", "-b", disk.backing, "-F",
                              "raw", disk.overlay});
      if (!made.ok()) return made.status().WithPrefix("disk " + d.disk + ": overlay");
      const std::string overlay = disk.overlay;
      undo_.Add([overlay] { unlink(overlay.c_str()); });
      chmod(disk.overlay.c_str(), 0600);  // libvirt hands it to the QEMU user
      summary_.overlays.push_back(disk.overlay);
      record_.disks.push_back(std::move(disk));
      log_.Info("disk " + d.disk + ": overlay " + overlay + " on " + record_.disks.back().backing);
    }
    return Status::Ok();
  }

  Status CopyBootFiles() {
    const std::unique_ptr<Host> here = MakeLocalHost();
    for (const BootFilePlan& b : plan_.boot_files) {
      const std::string target = Absolute(b.target);
      BFS_RETURN_IF_ERROR(PutSavedFile(*here, *plan_.saveset, b.saved, target));
      undo_.Add([target] { unlink(target.c_str()); });
      record_.files.push_back(target);
      log_.Info("the " + b.setting + " " + b.original + " restored as " + target);
    }
    return Status::Ok();
  }

  Result<std::string> AdjustedXml() {
    VmConfigChanges changes;
    changes.name = name_;
    for (const InstantDisk& d : record_.disks) changes.disks[d.target] = {d.overlay, "qcow2"};
    for (const BootFilePlan& b : plan_.boot_files) {
      changes.boot_files[b.setting] = Absolute(b.target);
    }
    BFS_ASSIGN_OR_RETURN(std::string xml,
                         AdjustDomainXml(plan_.vmconfig_xml, changes, plan_.vmconfig_path));
    const std::string config = Absolute(plan_.config_target);
    BFS_RETURN_IF_ERROR(WriteFileAtomically(
        config, std::span(reinterpret_cast<const uint8_t*>(xml.data()), xml.size()), 0600));
    undo_.Add([config] { unlink(config.c_str()); });
    record_.files.push_back(config);
    return xml;
  }

  Status DefineAndStart() {
    BFS_ASSIGN_OR_RETURN(std::string xml, AdjustedXml());
    BFS_ASSIGN_OR_RETURN(dom_, DefineDomain(conn_.get(), xml, name_));
    virDomainPtr raw = dom_.get();  // dom_ outlives undo_, whose steps use it
    const std::string name = name_;
    undo_.Add([raw, name] {
      if (virDomainIsActive(raw) == 1) (void)DestroyDomain(raw, name);
      (void)UndefineDomain(raw, name);
    });
    BFS_RETURN_IF_ERROR(SetDomainMetadata(raw, name_, kInstantNamespace, kInstantPrefix,
                                          InstantRecordXml(record_)));
    log_.Info("domain " + name_ + " defined on the overlays of restore point " + plan_.point);
    if (o_.start) {
      BFS_RETURN_IF_ERROR(Interrupted(stop_));
      BFS_RETURN_IF_ERROR(StartDomain(raw, name_));
      summary_.started = true;
      log_.Info("domain " + name_ + " started");
    }
    return Status::Ok();
  }

  const InstantOptions& o_;
  RunLog& log_;
  std::atomic<bool>& stop_;
  UniqueConnect conn_;
  UniqueDomain dom_;
  Undo undo_;  // after conn_ and dom_: runs before they close
  std::string workdir_;
  std::string name_;
  std::optional<UserIdentity> qemu_;
  RestorePlan plan_;
  InstantRecord record_;
  InstantSummary summary_;
};

}  // namespace

Result<InstantSummary> RunInstant(const InstantOptions& o, RunLog& log, std::atomic<bool>& stop) {
  BFS_ASSIGN_OR_RETURN(InstantSummary summary, o.remote.remote() ? RunRemoteInstant(o, log, stop)
                                                                 : Instant(o, log, stop).Run());
  if (!o.migrate_to.empty()) {
    MigrateOptions m;
    m.uri = o.uri;
    m.remote = o.remote;
    m.name = summary.name;
    m.target_dir = o.migrate_to;
    m.progress = o.progress;
    m.bandwidth = o.bandwidth;
    BFS_RETURN_IF_ERROR(MigrateInstant(m, log, stop)
                            .WithPrefix("domain " + summary.name +
                                        " runs from its backup, but the live restore failed"));
  }
  return summary;
}

Status EndInstant(const std::string& uri, const std::string& name, RunLog& log,
                  const RemoteOptions& remote) {
  BFS_ASSIGN_OR_RETURN(OpenedInstant in, OpenInstant(uri, name));
  std::unique_ptr<Host> host;  // a remote domain's files are on its host
  if (in.record.remote()) {
    BFS_RETURN_IF_ERROR(CheckServedHere(in.record, name));
    BFS_ASSIGN_OR_RETURN(host, ConnectInstantHost(uri, remote));
  }
  for (const InstantDisk& d : in.record.disks) {
    BFS_ASSIGN_OR_RETURN(BlockJobState job, GetBlockJob(in.dom.get(), name, d.target));
    if (job.exists) {
      return Status::FailedPrecondition(
          "domain " + name + " disk " + d.target +
          ": a copy job runs (live restore); let it finish, or cancel it with: virsh blockjob " +
          name + " " + d.target + " --abort");
    }
  }
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(in.dom.get(), name));
  if (active) BFS_RETURN_IF_ERROR(DestroyDomain(in.dom.get(), name));
  BFS_RETURN_IF_ERROR(UndefineDomain(in.dom.get(), name));
  log.Info("domain " + name + " stopped and undefined");
  if (host) return RemoveRemoteInstantFiles(*host, in.record, /*keep_files=*/false, log);
  return RemoveInstantFiles(in.record, /*keep_files=*/false, log);
}

namespace {

// ResumeInstant of a remote domain: what serves its point comes back here, on its ports.
Status ResumeRemoteInstant(OpenedInstant& in, bool start, RunLog& log) {
  BFS_RETURN_IF_ERROR(CheckServedHere(in.record, in.name));
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(in.dom.get(), in.name));
  BFS_ASSIGN_OR_RETURN(MountState state, ProbeMount(in.record.mount));
  if (state == MountState::kStale) {
    if (active) {
      return Status::FailedPrecondition("domain " + in.name +
                                        " runs on a mount whose daemon is gone (its disks fail "
                                        "reads); stop it first: virsh destroy " +
                                        in.name);
    }
    BFS_RETURN_IF_ERROR(StopServingInstant(in.record, log));
  }
  if (mkdir(in.record.served->dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("cannot create " + in.record.served->dir, errno);
  }
  const InstantRecord before = in.record;
  BFS_RETURN_IF_ERROR(ServeInstantPoint(in.record, log));
  if (!(in.record == before)) BFS_RETURN_IF_ERROR(SaveRecord(in));  // the new pids
  if (start && !active) {
    BFS_RETURN_IF_ERROR(StartDomain(in.dom.get(), in.name));
    log.Info("domain " + in.name + " started");
  }
  return Status::Ok();
}

}  // namespace

Status ResumeInstant(const std::string& uri, const std::string& name, bool start, RunLog& log) {
  BFS_ASSIGN_OR_RETURN(OpenedInstant in, OpenInstant(uri, name));
  if (in.record.remote()) return ResumeRemoteInstant(in, start, log);
  BFS_ASSIGN_OR_RETURN(MountState state, ProbeMount(in.record.mount));
  if (state == MountState::kStale) {
    BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(in.dom.get(), name));
    if (active) {
      return Status::FailedPrecondition(
          "domain " + name +
          " runs on a mount whose daemon is gone (its disks fail reads); "
          "stop it first: virsh destroy " +
          name);
    }
    BFS_RETURN_IF_ERROR(UnmountSaveset(in.record.mount));
    state = MountState::kAbsent;
  }
  if (state == MountState::kAbsent) {
    if (mkdir(in.record.mount.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::FromErrno("cannot create the mount point " + in.record.mount, errno);
    }
    BFS_ASSIGN_OR_RETURN(std::optional<UserIdentity> qemu, QemuIdentity(in.conn.get()));
    BFS_RETURN_IF_ERROR(MountForQemu(in.record, qemu));
    log.Info("saveset " + in.record.saveset + " mounted again on " + in.record.mount);
  }
  for (const InstantDisk& d : in.record.disks) {
    if (access(d.backing.c_str(), F_OK) != 0) {
      return Status::NotFound("disk " + d.target + ": " + d.backing +
                              " is not in the mount: has the saveset lost restore point " +
                              in.record.point + "?");
    }
  }
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(in.dom.get(), name));
  if (start && !active) {
    BFS_RETURN_IF_ERROR(StartDomain(in.dom.get(), name));
    log.Info("domain " + name + " started");
  }
  return Status::Ok();
}

namespace {

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

Result<std::string> MigrationState(virDomainPtr dom, const std::string& name,
                                   const InstantRecord& r) {
  uint64_t cur = 0, end = 0;
  bool any = false, ready = true;
  for (const InstantDisk& d : r.disks) {
    BFS_ASSIGN_OR_RETURN(BlockJobState job, GetBlockJob(dom, name, d.target));
    if (!job.exists) continue;
    any = true;
    cur += job.cur;
    end += job.end;
    ready = ready && job.ready();
  }
  if (any && ready) return std::string("copied, not yet switched over");
  if (any) {
    return "copying " + std::to_string(end ? cur * 100 / end : 0) + "% to " + r.migrate_to;
  }
  if (r.migration.empty()) return std::string("-");
  if (r.migration == "running") return "interrupted (to " + r.migrate_to + ")";
  return r.migration + " (to " + r.migrate_to + ")";
}

std::string Advice(const InstantEntry& e) {
  const std::string& n = e.name;
  if (e.mount == MountState::kStale) {
    return e.running ? "its disks fail reads: virsh destroy " + n +
                           "; then backupfs-restore -a instant-resume -N " + n
                     : "backupfs-restore -a instant-resume -N " + n + " (or -a instant-end)";
  }
  if (e.mount == MountState::kAbsent) {
    return "saveset not mounted (host rebooted?): backupfs-restore -a instant-resume -N " + n +
           ", or -a instant-end -N " + n + " to remove it";
  }
  const std::string migrate =
      "backupfs-restore -a instant-migrate -N " + n + " --migrate-to " + e.record.migrate_to;
  // A copy job runs in libvirt whether or not a command still watches it.
  if (e.migration.rfind("copying", 0) == 0 || e.migration.rfind("copied", 0) == 0) {
    return "unless an instant-migrate runs for it, " + migrate + " takes the copy over";
  }
  if (e.migration.rfind("interrupted", 0) == 0 || e.migration.rfind("failed", 0) == 0) {
    return migrate + " tries again";
  }
  return "";
}

}  // namespace

Result<InstantListing> ListInstant(const std::string& uri) {
  SilenceLibvirtErrors();
  BFS_ASSIGN_OR_RETURN(UniqueConnect conn, ConnectLibvirt(uri));
  BFS_ASSIGN_OR_RETURN(std::vector<UniqueDomain> all, ListAllDomains(conn.get()));
  InstantListing out;
  std::map<std::string, bool> used_mounts;
  for (UniqueDomain& dom : all) {
    InstantEntry e;
    e.name = DomainName(dom.get());
    auto xml = DomainMetadata(dom.get(), e.name, kInstantNamespace);
    if (!xml.ok() && xml.status().code() == StatusCode::kIOError &&
        virDomainIsActive(dom.get()) < 0) {
      continue;  // undefined while we looked
    }
    BFS_RETURN_IF_ERROR(xml.status());
    if (!*xml) continue;
    BFS_ASSIGN_OR_RETURN(e.record, ParseInstantRecord(**xml, "domain " + e.name));
    BFS_ASSIGN_OR_RETURN(e.running, DomainIsActive(dom.get(), e.name));
    // A remote domain's overlays are on its host: not measured from here.
    if (!e.record.remote()) {
      for (const InstantDisk& d : e.record.disks) e.overlay_bytes += AllocatedBytes(d.overlay);
    }
    BFS_ASSIGN_OR_RETURN(e.mount, ProbeMount(e.record.mount));
    BFS_ASSIGN_OR_RETURN(e.migration, MigrationState(dom.get(), e.name, e.record));
    e.advice = Advice(e);
    used_mounts[e.record.mount] = true;
    out.domains.push_back(std::move(e));
  }
  // This host's mounts belong to its own domains, which a remote URI does not list.
  if (IsRemoteUri(uri)) return out;
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> mounts, BackupfsMounts());
  for (const std::string& m : mounts) {
    // Mounts that serve remote domains are another URI's to tell (kServedMountName).
    if (fs::path(m).filename() == kInstantMountName && !used_mounts.count(m)) {
      out.leftovers.push_back(m +
                              ": an instant-recovery mount no domain uses; clear it with: "
                              "fusermount3 -u " +
                              m);
    }
  }
  return out;
}

}  // namespace backupfs
