#include "restore/instant_remote.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <filesystem>

#include "backupfs/saveset.h"
#include "capture/libvirt_instant.h"
#include "common/domain_xml.h"
#include "common/nbdkit_server.h"
#include "common/vmconfig_adjust.h"
#include "restore/instant_domain.h"
#include "restore/plan.h"
#include "restore/saveset_mount.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

Status Interrupted(const std::atomic<bool>& stop) {
  return stop.load() ? Status::Cancelled("interrupted: what was made so far is removed")
                     : Status::Ok();
}

std::string ThisHostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// "ADDR:PORT", "[v6]:PORT".
Status ParseServeAddress(const std::string& text, std::string& address, unsigned& port) {
  const std::string usage =
      "--nbd-serve " + text + ": expected ADDR:PORT, where this host serves NBD (10.0.0.5:10809)";
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return Status::InvalidArgument(usage);
  address = text.substr(0, colon);
  if (address.size() > 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  const char* begin = text.data() + colon + 1;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, port);
  if (begin == end || ec != std::errc() || ptr != end || port == 0 || port > 65535) {
    return Status::InvalidArgument(usage);
  }
  return Status::Ok();
}

std::string NbdUri(const std::string& address, unsigned port, const std::string& disk) {
  const bool v6 = address.find(':') != std::string::npos;
  return "nbd://" + (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port) + "/" + disk;
}

std::string PointImage(const InstantRecord& r, const std::string& disk) {
  return r.mount + "/" + r.point + "/" + disk + ".raw";
}

std::string PidFile(const InstantRecord& r, const std::string& disk) {
  return r.served->dir + "/nbdkit-" + disk + ".pid";
}

std::string NbdkitLog(const InstantRecord& r, const std::string& disk) {
  return r.served->dir + "/nbdkit-" + disk + ".log";
}

Status MountHere(const InstantRecord& r) {
  BFS_ASSIGN_OR_RETURN(MountState state, ProbeMount(r.mount));
  if (state == MountState::kServing) return Status::Ok();
  if (state == MountState::kStale) {
    // nbdkit holds the image open: the daemon's successor cannot take the mount over.
    return Status::FailedPrecondition(
        r.mount + " is a backupfs mount whose daemon is gone; stop what serves it with " +
        "backupfs-restore -a instant-end, or unmount it: fusermount3 -u -z " + r.mount);
  }
  if (mkdir(r.mount.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("cannot create the mount point " + r.mount, errno);
  }
  return MountForQemu(r, std::nullopt);  // nbdkit runs as us: no other user reads it
}

Status StartNbdkit(InstantRecord& r, InstantDisk& d, RunLog& log) {
  const std::string image = PointImage(r, d.target);
  if (IsNbdkitServing(d.nbdkit_pid, image)) return Status::Ok();
  if (access(image.c_str(), R_OK) != 0) {
    return Status::FromErrno("disk " + d.target + ": the mount shows no " + image +
                                 " (has the saveset lost restore point " + r.point + "?)",
                             errno);
  }
  NbdkitOptions q;
  q.image = image;
  q.export_name = d.target;
  q.tcp_host = r.served->address;
  q.tcp_port = std::to_string(d.nbd_port);
  q.log_path = NbdkitLog(r, d.target);
  if (r.served->tls) q.tls_certificates = r.served->tls_dir;
  auto pid = StartDetachedNbdkit(q, PidFile(r, d.target));
  if (!pid.ok()) return pid.status().WithPrefix("disk " + d.target);
  d.nbdkit_pid = *pid;
  log.Info("disk " + d.target + ": nbdkit (pid " + std::to_string(*pid) + ") serves " + image +
           " at " + d.backing + (r.served->tls ? " (TLS)" : ""));
  return Status::Ok();
}

// -a instant against another host; the steps in the order they are taken back.
class RemoteInstant {
 public:
  RemoteInstant(const InstantOptions& o, RunLog& log, std::atomic<bool>& stop)
      : o_(o), log_(log), stop_(stop) {}

  Result<InstantSummary> Run() {
    BFS_RETURN_IF_ERROR(CheckOptions());
    BFS_RETURN_IF_ERROR(PlanPoint());
    BFS_RETURN_IF_ERROR(CheckName());
    BFS_ASSIGN_OR_RETURN(host_, ConnectHost(o_.remote));
    BFS_RETURN_IF_ERROR(CheckTargetsFree());
    BFS_RETURN_IF_ERROR(Serve());
    BFS_RETURN_IF_ERROR(Interrupted(stop_));
    BFS_RETURN_IF_ERROR(PrepareWorkdir());
    BFS_RETURN_IF_ERROR(CreateOverlays());
    BFS_RETURN_IF_ERROR(CopyBootFiles());
    BFS_RETURN_IF_ERROR(Interrupted(stop_));
    BFS_RETURN_IF_ERROR(DefineAndStart());
    undo_.Commit();
    return std::move(summary_);
  }

 private:
  Status CheckOptions() {
    BFS_RETURN_IF_ERROR(ParseServeAddress(o_.nbd_serve, served_.address, base_port_));
    workdir_ = fs::path(o_.workdir).lexically_normal().string();
    if (workdir_.size() > 1 && workdir_.back() == '/') workdir_.pop_back();
    if (workdir_.empty() || workdir_[0] != '/') {
      return Status::InvalidArgument("-o " + o_.workdir +
                                     ": the work directory on the remote host must be an "
                                     "absolute path");
    }
    if (o_.remote.tls) {
      // nbdkit would require TLS (InstantServed::tls), but the domain's QEMU would also need
      // the disk's <source tls='yes'> and the hypervisor's nbd_tls_x509_cert_dir: not done.
      return Status::InvalidArgument(
          "--tls: remote instant recovery serves NBD without TLS for now (the hypervisor's "
          "QEMU would need TLS settings for NBD disks); serve on a trusted network, or use "
          "-a restore -U to copy the images over TLS");
    }
    served_.host = ThisHostName();
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
    r.force = true;  // the targets are on the remote host: CheckTargetsFree looks there
    BFS_ASSIGN_OR_RETURN(SavesetModel model, LoadSaveset(r.saveset, OpenOptions()));
    for (const std::string& p : model.problems) log_.Warn(p);
    BFS_ASSIGN_OR_RETURN(plan_, PlanRestore(model, r));
    for (const std::string& w : plan_.warnings) log_.Warn(w);
    if (plan_.vmconfig_xml.empty()) {
      return Status::NotFound("restore point " + plan_.point + " of " + o_.input +
                              " has no saved domain XML (vmconfig.*.xml): nothing to define");
    }
    if (base_port_ + plan_.disks.size() - 1 > 65535) {
      return Status::InvalidArgument(
          "--nbd-serve " + o_.nbd_serve + ": " + std::to_string(plan_.disks.size()) +
          " disks need ports up to " + std::to_string(base_port_ + plan_.disks.size() - 1));
    }
    summary_.point = plan_.point;
    record_.saveset = MountAddress(*r.saveset);
    record_.store_options = MountStoreOptions(*r.saveset, o_.store);
    record_.point = plan_.point;
    record_.workdir = workdir_;
    return Status::Ok();
  }

  Status CheckName() {
    BFS_ASSIGN_OR_RETURN(std::string original,
                         ParseDomainName(plan_.vmconfig_xml, plan_.vmconfig_path));
    name_ = o_.name.empty() ? DefaultRestoredName(original) : o_.name;
    SilenceLibvirtErrors();
    BFS_ASSIGN_OR_RETURN(conn_, ConnectLibvirt(o_.uri));
    BFS_RETURN_IF_ERROR(RequireNameFree(conn_.get(), name_));
    summary_.name = name_;
    return Status::Ok();
  }

  Status CheckTargetsFree() {
    std::vector<std::string> targets = {plan_.config_target};
    for (const DiskPlan& d : plan_.disks) targets.push_back(d.target);
    for (const BootFilePlan& b : plan_.boot_files) targets.push_back(b.target);
    for (const std::string& t : targets) {
      BFS_ASSIGN_OR_RETURN(bool exists, host_->Exists(t));
      if (exists) {
        return Status::FailedPrecondition(t + " exists on " + host_->name() +
                                          "; remove it or choose another -o directory");
      }
    }
    return Status::Ok();
  }

  // The mount and the nbdkits, in a private directory of this host.
  Status Serve() {
    const std::string tmpl_text = "/var/tmp/backupfs-served." + name_ + ".XXXXXX";
    std::vector<char> tmpl(tmpl_text.begin(), tmpl_text.end());
    tmpl.push_back('\0');
    if (mkdtemp(tmpl.data()) == nullptr) {
      return Status::FromErrno("cannot create a directory in /var/tmp for the NBD server", errno);
    }
    served_.dir = tmpl.data();
    record_.served = served_;
    record_.mount = served_.dir + "/" + kServedMountName;
    for (size_t i = 0; i < plan_.disks.size(); ++i) {
      InstantDisk disk;
      disk.target = plan_.disks[i].disk;
      disk.overlay = plan_.disks[i].target;
      disk.nbd_port = base_port_ + static_cast<unsigned>(i);
      disk.backing = NbdUri(served_.address, disk.nbd_port, disk.target);
      record_.disks.push_back(std::move(disk));
    }
    // Stops whatever of it was started, as the record says by then.
    undo_.Add([this] { (void)StopServingInstant(record_, log_); });
    BFS_RETURN_IF_ERROR(ServeInstantPoint(record_, log_));
    return Status::Ok();
  }

  Status PrepareWorkdir() {
    BFS_ASSIGN_OR_RETURN(bool exists, host_->Exists(workdir_));
    if (exists) return Status::Ok();
    BFS_RETURN_IF_ERROR(host_->MakeDirs(workdir_, 0755));
    Host* host = host_.get();
    const std::string dir = workdir_;
    undo_.Add([host, dir] { (void)host->Remove(dir); });
    log_.Info("created the work directory " + workdir_ + " on " + host_->name());
    return Status::Ok();
  }

  Status CreateOverlays() {
    for (InstantDisk& d : record_.disks) {
      struct stat st;
      const std::string image = PointImage(record_, d.target);
      if (stat(image.c_str(), &st) != 0) {
        return Status::FromErrno("disk " + d.target + ": the mount shows no " + image, errno);
      }
      // -u: the backing file is not opened here; the domain's QEMU opens it when it starts.
      auto made = host_->RunChecked({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                                     d.backing, "-u", d.overlay, std::to_string(st.st_size)});
      if (!made.ok()) return made.status().WithPrefix("disk " + d.target + ": overlay");
      Host* host = host_.get();
      const std::string overlay = d.overlay;
      undo_.Add([host, overlay] { (void)host->Remove(overlay); });
      summary_.overlays.push_back(d.overlay);
      log_.Info("disk " + d.target + ": overlay " + d.overlay + " on " + host_->name() +
                ", backed by " + d.backing);
    }
    return Status::Ok();
  }

  Status CopyBootFiles() {
    for (const BootFilePlan& b : plan_.boot_files) {
      BFS_RETURN_IF_ERROR(PutSavedFile(*host_, *plan_.saveset, b.saved, b.target));
      Host* host = host_.get();
      const std::string target = b.target;
      undo_.Add([host, target] { (void)host->Remove(target); });
      record_.files.push_back(b.target);
      log_.Info("the " + b.setting + " " + b.original + " restored as " + b.target + " on " +
                host_->name());
    }
    return Status::Ok();
  }

  Result<std::string> AdjustedXml() {
    VmConfigChanges changes;
    changes.name = name_;
    for (const InstantDisk& d : record_.disks) changes.disks[d.target] = {d.overlay, "qcow2"};
    for (const BootFilePlan& b : plan_.boot_files) changes.boot_files[b.setting] = b.target;
    BFS_ASSIGN_OR_RETURN(std::string xml,
                         AdjustDomainXml(plan_.vmconfig_xml, changes, plan_.vmconfig_path));
    BFS_RETURN_IF_ERROR(host_->WriteFile(plan_.config_target, xml, 0600));
    Host* host = host_.get();
    const std::string config = plan_.config_target;
    undo_.Add([host, config] { (void)host->Remove(config); });
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
    log_.Info("domain " + name_ + " defined on " + host_->name() +
              " on the overlays of restore point " + plan_.point);
    if (o_.start) {
      BFS_RETURN_IF_ERROR(Interrupted(stop_));
      BFS_RETURN_IF_ERROR(StartDomain(raw, name_));
      summary_.started = true;
      log_.Info("domain " + name_ + " started on " + host_->name());
    }
    return Status::Ok();
  }

  const InstantOptions& o_;
  RunLog& log_;
  std::atomic<bool>& stop_;
  UniqueConnect conn_;
  UniqueDomain dom_;
  std::unique_ptr<Host> host_;
  InstantServed served_;
  unsigned base_port_ = 0;
  std::string workdir_;
  std::string name_;
  RestorePlan plan_;
  InstantRecord record_;
  InstantSummary summary_;
  Undo undo_;  // last: its steps run before the members they use are gone
};

}  // namespace

Result<InstantSummary> RunRemoteInstant(const InstantOptions& o, RunLog& log,
                                        std::atomic<bool>& stop) {
  return RemoteInstant(o, log, stop).Run();
}

Result<std::unique_ptr<Host>> ConnectInstantHost(const std::string& uri,
                                                 const RemoteOptions& remote) {
  if (remote.remote()) return ConnectHost(remote);
  BFS_ASSIGN_OR_RETURN(RemoteOptions from_uri, RemoteFromUri(uri, RemoteOptions()));
  if (!from_uri.remote()) {
    return Status::InvalidArgument(
        "a remote instant domain (its point is served over NBD) is reached with -U naming its "
        "host, not " +
        (uri.empty() ? std::string("qemu:///system") : uri));
  }
  return ConnectHost(from_uri);
}

Status CheckServedHere(const InstantRecord& record, const std::string& name) {
  if (!record.served) return Status::Ok();
  const std::string here = ThisHostName();
  if (record.served->host != here) {
    return Status::FailedPrecondition("domain " + name + " reads its restore point from " +
                                      record.served->host + " (NBD on " + record.served->address +
                                      "), not from this host (" + here + "): run this there");
  }
  return Status::Ok();
}

Status ServeInstantPoint(InstantRecord& record, RunLog& log) {
  BFS_RETURN_IF_ERROR(MountHere(record));
  for (InstantDisk& d : record.disks) BFS_RETURN_IF_ERROR(StartNbdkit(record, d, log));
  return Status::Ok();
}

Status StopServingInstant(const InstantRecord& record, RunLog& log) {
  Status first = Status::Ok();
  auto note = [&](Status s) {
    if (s.ok()) return;
    log.Error(s.message());
    if (first.ok()) first = s;
  };
  for (const InstantDisk& d : record.disks) {
    const std::string image = PointImage(record, d.target);
    if (!IsNbdkitServing(d.nbdkit_pid, image)) continue;
    note(StopDetachedNbdkit(d.nbdkit_pid, image));
    log.Info("disk " + d.target + ": nbdkit (pid " + std::to_string(d.nbdkit_pid) + ") on port " +
             std::to_string(d.nbd_port) + " stopped");
  }
  Result<MountState> state = ProbeMount(record.mount);
  if (!state.ok()) {
    note(state.status());
  } else if (*state != MountState::kAbsent) {
    note(UnmountSaveset(record.mount));
  }
  if (record.served && !record.served->dir.empty()) {
    std::error_code ec;
    // Only when nothing is mounted in it any more: remove_all must not walk a mount.
    Result<MountState> after = ProbeMount(record.mount);
    if (after.ok() && *after == MountState::kAbsent) {
      fs::remove_all(record.served->dir, ec);
      if (ec) note(Status::FromErrno("cannot remove " + record.served->dir, ec.value()));
    }
  }
  return first;
}

Status RemoveRemoteInstantFiles(Host& host, const InstantRecord& record, bool keep_files,
                                RunLog& log) {
  Status first = Status::Ok();
  auto note = [&](Status s) {
    if (s.ok()) return;
    log.Error(s.message());
    if (first.ok()) first = s;
  };
  auto remove = [&](const std::string& path) {
    Result<bool> exists = host.Exists(path);
    if (!exists.ok()) return note(exists.status());
    if (*exists) note(host.Remove(path).WithPrefix("on " + host.name()));
  };
  for (const InstantDisk& d : record.disks) remove(d.overlay);
  if (!keep_files) {
    for (const std::string& f : record.files) remove(f);
  }
  // Only when nothing else is in it: the admin may keep other files there.
  if (host.Remove(record.workdir).ok()) {
    log.Info("removed the work directory " + record.workdir + " on " + host.name());
  }
  note(StopServingInstant(record, log));
  return first;
}

}  // namespace backupfs
