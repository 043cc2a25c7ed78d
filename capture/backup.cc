#include "capture/backup.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <thread>

#include "backupfs/consolidation_journal.h"
#include "capture/backup_job.h"
#include "capture/capture_disks.h"
#include "capture/chain_plan.h"
#include "capture/checkpoints.h"
#include "capture/domain_state.h"
#include "capture/libvirt.h"
#include "capture/libvirt_chain.h"
#include "capture/pending_checkpoints.h"
#include "capture/saveset_files.h"
#include "capture/transport.h"
#include "common/domain_xml.h"
#include "common/qemu_nbd.h"

namespace backupfs {

const char* CaptureLevelName(CaptureLevel level) {
  switch (level) {
    case CaptureLevel::kCopy:
      return "copy";
    case CaptureLevel::kFull:
      return "full";
    case CaptureLevel::kInc:
      return "inc";
    case CaptureLevel::kDiff:
      return "diff";
    case CaptureLevel::kAuto:
      return "auto";
  }
  return "?";
}

namespace {

// One run: the domain's state and the chain decide a plan (chain_plan.h), and the transport
// (transport.h) says how the hypervisor is reached, local or remote; this class only puts
// them in order.
class Run {
 public:
  explicit Run(const BackupOptions& o) : o_(o), log_(*o.log) {}
  Result<BackupSummary> Execute();

 private:
  std::string Dom() const { return "domain " + o_.domain; }
  // Reads dirty bitmaps (inc, diff) rather than the whole disk.
  bool Inc() const { return level_ == CaptureLevel::kInc || level_ == CaptureLevel::kDiff; }
  // Null only for -k, which writes nothing.
  Storage& Saveset() const { return *o_.saveset; }
  // The saveset as the user named it (a directory, or an s3:// address), for messages.
  const std::string& Out() const { return Saveset().address(); }
  // Where checkpoint XML is kept: -C's, or `checkpoints/` of the saveset.
  Storage& Checkpoints() {
    if (o_.checkpoints != nullptr) return *o_.checkpoints;
    if (!own_checkpoints_) own_checkpoints_ = Saveset().Sub("checkpoints");
    return *own_checkpoints_;
  }
  bool Cancelled() const { return o_.cancel != nullptr && o_.cancel->load(); }

  Status Connect();
  Status KillOnly();
  Status PrepareOutputDir();
  Status RemovePartials();
  Status FinishConsolidation();
  void DeletePending();
  Status EnsureRunning();
  Status ResolveLevel();
  Result<std::string> ChainBroken(const std::vector<std::string>& list);
  Result<ChainStep> Plan();
  Result<ChainStep> RestartChain(const std::string& why);
  Status NewChainInstead(const std::string& why, bool move_old);
  Result<bool> SkipByEstimate(const ChainStep& step);
  Status StartJob(const ChainStep& step);
  Status ExplainJobFailure(const Status& failed, const JobServer& server) const;
  Result<std::vector<DiskWork>> PlanDisks(const ChainStep& step);
  Result<std::vector<CapturedDisk>> CaptureAll(const ChainStep& step);
  Status SaveFiles(const ChainStep& step, const BackupSummary& summary);
  // Ok while the saveset's lock is still this run's; else why not, and before what it stopped.
  Status StillLocked(const std::string& before) const;

  const BackupOptions& o_;
  RunLog& log_;
  std::unique_ptr<Storage> own_checkpoints_;  // Checkpoints() when -C names none
  UniqueConnect conn_;
  UniqueDomain dom_;
  std::unique_ptr<DomainStateGuard> state_;
  std::unique_ptr<LibvirtChain> chain_;
  std::string domain_xml_;
  // The saveset's checkpoint list (<domain>.cpt) as ResolveLevel read it: the lock keeps other
  // writers out, so it is read once per run (on a store, every read is a request).
  std::vector<std::string> checkpoint_list_;
  DiskSelection selection_;
  std::unique_ptr<StorageLock> lock_;         // the saveset's, while we run
  CaptureLevel level_ = CaptureLevel::kFull;  // o_.level resolved (auto, offline)
  bool offline_ = false;                      // read through qemu-nbd, no libvirt job
  // Declared before job_, so that on every early return the job is aborted first, then our
  // connections to its export close (see NbdHandlePark), then the transport's work directory
  // (holding the socket, the scratch files and owner.pid, by which other runs tell a live job
  // from a stale one) and its offline servers go.
  std::unique_ptr<CaptureTransport> transport_;
  NbdHandlePark nbd_park_;
  std::unique_ptr<BackupJob> job_;
};

Status Run::Connect() {
  SilenceLibvirtErrors();
  BFS_ASSIGN_OR_RETURN(transport_, CaptureTransport::Connect(o_));
  BFS_ASSIGN_OR_RETURN(conn_, ConnectLibvirt(o_.remote));
  Result<UniqueDomain> dom = LookupDomain(conn_.get(), o_.domain);
  if (!dom.ok() && transport_->remote()) {
    return dom.status().WithPrefix(transport_->host().name() + " (" + o_.remote.uri + ")");
  }
  BFS_ASSIGN_OR_RETURN(dom_, std::move(dom));
  state_ = std::make_unique<DomainStateGuard>(dom_.get(), o_.domain, log_);
  return Status::Ok();
}

// -k: abort a job left running (by a killed run of ours or of virtnbdbackup) and stop.
Status Run::KillOnly() {
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(dom_.get(), o_.domain));
  if (!active) {
    log_.Info(Dom() + " is shut off: no backup job to abort");
    return Status::Ok();
  }
  BFS_ASSIGN_OR_RETURN(bool aborted, AbortAnyBackupJob(dom_.get(), o_.domain));
  log_.Info(aborted ? "aborted the running backup job of " + Dom()
                    : Dom() + " has no backup job running");
  return Status::Ok();
}

Status Run::PrepareOutputDir() {
  BFS_RETURN_IF_ERROR(Saveset().MakeDir(""));
  // One run per saveset at a time: a second one fails at once.
  BFS_ASSIGN_OR_RETURN(lock_, Saveset().Lock("backupfs-capture"));
  BFS_ASSIGN_OR_RETURN(std::vector<StoredObject> top, ListSavesetTop(Saveset()));
  // Before the log file: a run must not write into another domain's saveset at all.
  BFS_RETURN_IF_ERROR(CheckSavesetDomain(Saveset(), top, o_.domain));
  if (!Saveset().LocalDir()) {  // a local file's mtime has nanoseconds
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const std::chrono::nanoseconds wait =
        WaitForALaterSecond(top, std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
    if (wait.count() > 0) {
      log_.Info("waiting " + std::to_string(wait.count() / 1000000) +
                " ms for a later second than the newest data file's (virtnbdrestore orders a "
                "synced-down chain by mtime)");
      std::this_thread::sleep_for(wait);
    }
  }
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  tm local{};
  localtime_r(&now, &local);
  strftime(stamp, sizeof stamp, "%m%d%Y%H%M%S", &local);  // virtnbdbackup's name
  BFS_RETURN_IF_ERROR(o_.log_file->Open(
      Saveset(), std::string("backup.") + CaptureLevelName(o_.level) + "." + stamp));
  BFS_RETURN_IF_ERROR(RemovePartials());
  return FinishConsolidation();
}

// With the lock held no live run writes here: what is unfinished is an interrupted run's.
Status Run::RemovePartials() {
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> removed, Saveset().RemoveUnfinished());
  for (const std::string& r : removed) log_.Warn("removed " + r + ", left by an interrupted run");
  return Status::Ok();
}

// A consolidation killed after its commit: finish it before the chain is read, in a
// directory or a store alike (consolidation_journal.h).
Status Run::FinishConsolidation() {
  BFS_ASSIGN_OR_RETURN(std::string finished, CompleteConsolidation(Saveset()));
  if (!finished.empty()) log_.Warn(finished);
  return Status::Ok();
}

// Checkpoints a consolidation could not delete (libvirt was out of reach then). The backup
// is done: a failure here is the warning DeletePendingCheckpoints logs, nothing more. Their
// list is kept in a local saveset only (consolidation_journal.h).
void Run::DeletePending() {
  std::optional<std::string> dir = Saveset().LocalDir();
  if (!dir) return;
  Result<std::vector<std::string>> left = DeletePendingCheckpoints(*dir, o_.remote, log_);
  if (!left.ok()) log_.Warn(left.status().message());
}

// A shut-off domain is read offline, or started paused with -S.
Status Run::EnsureRunning() {
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(dom_.get(), o_.domain));
  if (active) {
    BFS_ASSIGN_OR_RETURN(bool aborted, AbortStaleJob(transport_->host(), dom_.get(), o_.domain));
    if (aborted) log_.Warn("aborted the backup job of an interrupted run");
    return Status::Ok();
  }
  if (!o_.start_domain) {
    offline_ = true;
    log_.Info(Dom() + " is shut off: reading its images through qemu-nbd");
    return Status::Ok();
  }
  log_.Info("starting " + Dom() + " paused for the backup (-S)");
  BFS_RETURN_IF_ERROR(StartDomainPaused(dom_.get(), o_.domain));
  state_->MarkStarted();
  return Status::Ok();
}

Result<std::string> Run::ChainBroken(const std::vector<std::string>& list) {
  if (list.empty()) return std::string("no checkpoint yet");
  if (offline_) return OfflineChainBroken(transport_->host(), domain_xml_, o_.domain, list.back());
  return chain_->Broken(list);
}

// Resolves auto, checks that an inc/diff can continue the chain, and maps levels a shut-off
// domain cannot take.
Status Run::ResolveLevel() {
  level_ = o_.level;
  BFS_ASSIGN_OR_RETURN(checkpoint_list_,
                       ReadCheckpointList(Saveset(), CheckpointListName(o_.domain)));
  const std::vector<std::string>& list = checkpoint_list_;
  if (level_ == CaptureLevel::kAuto || Inc()) {
    BFS_ASSIGN_OR_RETURN(std::string broken, ChainBroken(list));
    if (!broken.empty() && level_ == CaptureLevel::kAuto && offline_) {
      return Status::FailedPrecondition(
          Dom() + " is shut off and " + Out() + " holds no chain to continue (" + broken +
          "): libvirt cannot create checkpoints for a shut-off domain; use -S to start it "
          "paused for a full backup, or -l copy");
    }
    if (!broken.empty() && level_ == CaptureLevel::kAuto) {
      log_.Info("auto: " + broken + ": starting a new chain with a full backup");
      BFS_RETURN_IF_ERROR(NewChainInstead(broken, !list.empty() && !o_.print_only));
    } else if (!broken.empty()) {
      return Status::FailedPrecondition(
          Dom() + ": cannot continue the chain in " + Out() + ": " + broken +
          (list.empty() ? "; run a full backup (-l full) first"
                        : "; start a new chain with -l full (or -l auto) into a new directory"));
    } else if (level_ == CaptureLevel::kAuto) {
      level_ = CaptureLevel::kInc;
      log_.Info("auto: continuing the chain after " + list.back() + " with an inc");
    }
  }
  if (!offline_) return Status::Ok();
  if (level_ == CaptureLevel::kFull) {
    log_.Warn(Dom() +
              " is shut off and libvirt cannot create checkpoints for it: taking a copy "
              "backup (use -S to start it paused for a full backup)");
    level_ = CaptureLevel::kCopy;
  } else if (level_ == CaptureLevel::kInc) {
    log_.Warn(Dom() +
              " is shut off and libvirt cannot create checkpoints for it: taking a diff "
              "backup of the changes since " +
              list.back() + " (use -S for an inc)");
    level_ = CaptureLevel::kDiff;
  }
  return Status::Ok();
}

// -q maps the disks with nbdinfo, a client of its own whose disconnect from the job's export
// would crash a domain whose disk runs in an iothread (see NbdHandlePark).
Status RefuseNbdinfoOnIothreads(const BackupOptions& o, const std::vector<SelectedDisk>& disks) {
  for (const SelectedDisk& d : disks) {
    if (d.disk.iothread.empty()) continue;
    return Status::FailedPrecondition(
        "domain " + o.domain + " disk " + d.disk.target + " runs in iothread " + d.disk.iothread +
        ": -q cannot be used, because nbdinfo's disconnect from the backup export makes QEMU "
        "abort the domain (QEMU 7.2, blockdev-nbd.c); run without -q");
  }
  return Status::Ok();
}

// The disks, the chain step, and the checkpoints to clear for it.
Result<ChainStep> Run::Plan() {
  BFS_ASSIGN_OR_RETURN(selection_, SelectDisks(domain_xml_, o_, level_));
  for (const std::string& line : selection_.skipped) log_.Info(line);
  if (o_.qemu_extents && !offline_ && !o_.print_only) {
    BFS_RETURN_IF_ERROR(RefuseNbdinfoOnIothreads(o_, selection_.disks));
  }
  const std::vector<std::string> none;
  ChainStep step = PlanChainStep(level_, Inc() ? checkpoint_list_ : none, std::time(nullptr));
  BFS_RETURN_IF_ERROR(RefuseExistingBackup(Saveset(), selection_.disks, level_, step));
  if (!o_.print_only && level_ == CaptureLevel::kFull) {
    BFS_RETURN_IF_ERROR(chain_->RemoveOurCheckpoints());
  }
  if (!o_.print_only && step.create && !step.parent.empty()) {
    BFS_RETURN_IF_ERROR(chain_->DropOrphan(step.checkpoint));
  }
  return step;
}

// auto, when the chain cannot continue: the old chain's files move to broken-chain.<time>
// (kept for restores) and this run becomes a full backup.
Status Run::NewChainInstead(const std::string& why, bool move_old) {
  if (move_old) {
    BFS_ASSIGN_OR_RETURN(std::string moved, MoveChainAside(Saveset(), o_.log_file->name()));
    log_.Warn("the chain in " + Out() + " cannot continue (" + why + "): its files were moved to " +
              moved + "; starting a new chain with a full backup");
    checkpoint_list_.clear();  // moved aside with the rest
  }
  level_ = CaptureLevel::kFull;
  return Status::Ok();
}

// QEMU refused the incremental job: the last checkpoint's bitmap is missing or broken (libvirt
// only finds out when the job starts). auto starts a new chain; inc and diff cannot go on.
Result<ChainStep> Run::RestartChain(const std::string& why) {
  if (o_.level != CaptureLevel::kAuto) {
    return Status::FailedPrecondition(
        Dom() + ": cannot continue the chain in " + Out() + ": " + why +
        "; start a new chain with -l full (or -l auto) into a new directory");
  }
  BFS_RETURN_IF_ERROR(NewChainInstead(why, /*move_old=*/true));
  return Plan();
}

// -p and -T: libvirt's estimate of what changed since the parent (online inc/diff only, as in
// virtnbdbackup; a full or offline backup has no cheap estimate).
Result<bool> Run::SkipByEstimate(const ChainStep& step) {
  if (!o_.print_only && !o_.threshold) return false;
  if (step.parent.empty() || offline_) {
    if (o_.print_only) {
      log_.Info(std::string(CaptureLevelName(level_)) + " backup of " +
                std::to_string(selection_.disks.size()) +
                " disk(s): no estimate without a checkpoint of a running domain");
    }
    return o_.print_only;
  }
  BFS_ASSIGN_OR_RETURN(uint64_t size, chain_->ChangedSince(step.parent));
  log_.Info("estimated size of the changes since " + step.parent + ": " + std::to_string(size) +
            " bytes");
  if (o_.print_only) {
    std::printf("%llu\n", static_cast<unsigned long long>(size));
    return true;
  }
  if (size < *o_.threshold) {
    log_.Info("below the threshold of " + std::to_string(*o_.threshold) +
              " bytes (-T): no backup taken");
    return true;
  }
  return false;
}

Status Run::StartJob(const ChainStep& step) {
  if (o_.pause) {
    BFS_RETURN_IF_ERROR(SuspendDomain(dom_.get(), o_.domain));
    state_->MarkSuspended();
    log_.Info(Dom() + " paused until its disks are read (--pause)");
  } else if (!state_->started_paused()) {
    state_->Freeze(domain_xml_, o_.freeze_mountpoints);
  }
  const JobServer server = transport_->JobExport();
  log_.Info("starting the backup job" + (step.create ? ", checkpoint " + step.checkpoint : "") +
            (step.parent.empty() ? "" : ", changes since " + step.parent) + ", export on " +
            (server.socket.empty()
                 ? server.name + ":" + std::to_string(server.port) + (server.tls ? " (TLS)" : "")
                 : server.socket));
  Result<std::unique_ptr<BackupJob>> job = BackupJob::Begin(
      dom_.get(), o_.domain,
      BuildBackupXml(server, transport_->work_dir(), Inc() ? step.parent : "",
                     selection_.job_disks),
      step.create ? BuildCheckpointXml(step.checkpoint, step.parent, selection_.job_disks) : "",
      step.checkpoint);
  state_->Thaw();
  if (!job.ok()) return ExplainJobFailure(job.status(), server);
  job_ = std::move(job).value();
  return Status::Ok();
}

// QEMU could not listen where the job's export should: say which port, on which host, and what
// to do, rather than only QEMU's "Failed to bind socket".
Status Run::ExplainJobFailure(const Status& failed, const JobServer& server) const {
  if (server.socket.empty() && failed.message().find("in use") != std::string::npos) {
    return failed.WithSuffix(": NBD port " + std::to_string(server.port) + " on " +
                             transport_->host().name() + " (" + server.name + ":" +
                             std::to_string(server.port) +
                             ") is in use, by another backup perhaps; pick a free one with -P");
  }
  return failed;
}

// Where each disk is read from and what is written for it.
Result<std::vector<DiskWork>> Run::PlanDisks(const ChainStep& step) {
  std::vector<NbdEndpoint> offline;
  if (offline_) {
    std::vector<DomainDisk> images;
    for (const SelectedDisk& d : selection_.disks) images.push_back(d.disk);
    BFS_ASSIGN_OR_RETURN(offline, transport_->ServeOffline(images, Inc() ? step.parent : "", log_));
  }
  std::vector<DiskWork> work;
  for (size_t i = 0; i < selection_.disks.size(); i++) {
    const SelectedDisk& d = selection_.disks[i];
    DiskWork w{d.disk, {}, {}};
    w.source.export_name = d.disk.target;
    if (offline_) {
      w.source.endpoint = offline[i];
      if (Inc()) w.source.dirty_context = QemuNbdDirtyContext(step.parent);
    } else {
      w.source.endpoint = transport_->JobEndpoint();
      w.source.park = &nbd_park_;
      if (Inc()) w.source.dirty_context = "qemu:dirty-bitmap:backup-" + d.disk.target;
    }
    w.target.storage = &Saveset();
    w.target.name = DataFileName(d, level_, step);
    w.target.type = o_.type;
    w.target.lz4_level = o_.lz4_level;
    w.target.qemu_extents = o_.qemu_extents;
    w.target.meta.disk_name = d.disk.target;
    w.target.meta.disk_format = d.raw ? "raw" : d.disk.format;
    w.target.meta.checkpoint_name = step.checkpoint;
    w.target.meta.parent_checkpoint = step.parent;
    w.target.meta.incremental = Inc();
    work.push_back(std::move(w));
  }
  return work;
}

Result<std::vector<CapturedDisk>> Run::CaptureAll(const ChainStep& step) {
  BFS_ASSIGN_OR_RETURN(std::vector<DiskWork> work, PlanDisks(step));
  Result<std::vector<CapturedDisk>> captured = CaptureDisks(
      work, o_.workers, [this] { return Cancelled(); }, o_.progress, Dom(), log_);
  transport_->StopOffline();
  return captured;
}

// A lease in a store can be lost (not renewed in time, taken over): what this run writes
// after that may mix with another run's, so it stops, and records no restore point.
Status Run::StillLocked(const std::string& before) const {
  return lock_->Held().WithSuffix(": stopped before " + before + "; no restore point recorded");
}

// The files beside the data; when they cannot be written, the data files go again.
Status Run::SaveFiles(const ChainStep& step, const BackupSummary& summary) {
  SavesetFiles files{Saveset(),          Checkpoints(), o_.domain, step.id,
                     transport_->host(), log_,          *lock_};
  std::vector<DomainDisk> saved;
  for (const SelectedDisk& d : selection_.disks) saved.push_back(d.disk);
  Status s = files.SaveAll(dom_.get(), domain_xml_, saved, level_ == CaptureLevel::kCopy,
                           step.create ? step.checkpoint : "", step.list);
  // Without the lock, the files may be another run's by now: its point has the same name, as
  // no checkpoint list of ours was written.
  if (!s.ok() && lock_->Held().ok()) {
    for (const DiskSummary& d : summary.disks) RemoveDataFile(Saveset(), d.file);
  }
  return s;
}

Result<BackupSummary> Run::Execute() {
  BFS_RETURN_IF_ERROR(Connect());
  if (o_.kill_only) {
    BFS_RETURN_IF_ERROR(KillOnly());
    return BackupSummary{o_.level, "", "", true, {}};
  }
  chain_ = std::make_unique<LibvirtChain>(dom_.get(), o_.domain, Checkpoints(), log_);
  BFS_RETURN_IF_ERROR(PrepareOutputDir());
  log_.Info("backupfs-capture " + o_.version + ": " + Dom() + ", level " +
            CaptureLevelName(o_.level) + ", into " + Out() +
            (transport_->remote() ? ", on " + transport_->host().name() : ""));
  BFS_RETURN_IF_ERROR(EnsureRunning());
  BFS_ASSIGN_OR_RETURN(domain_xml_, DomainXml(dom_.get(), o_.domain));
  BFS_RETURN_IF_ERROR(ResolveLevel());
  BFS_ASSIGN_OR_RETURN(ChainStep step, Plan());
  BFS_ASSIGN_OR_RETURN(bool skip, SkipByEstimate(step));
  if (skip) return BackupSummary{level_, step.checkpoint, step.parent, true, {}};
  BFS_RETURN_IF_ERROR(transport_->CreateWorkDir());
  if (!offline_) {
    Status started = StartJob(step);
    if (started.code() == StatusCode::kFailedPrecondition && Inc()) {
      BFS_ASSIGN_OR_RETURN(step, RestartChain(started.message()));
      started = StartJob(step);
    }
    BFS_RETURN_IF_ERROR(started);
  }
  BFS_ASSIGN_OR_RETURN(std::vector<CapturedDisk> captured, CaptureAll(step));
  if (job_) BFS_RETURN_IF_ERROR(job_->End());
  nbd_park_.CloseAll();
  state_->Resume();
  if (Cancelled()) return Status::Cancelled("stopped on request before the files were finished");
  BFS_RETURN_IF_ERROR(FinishDisks(captured, Saveset(), Dom(),
                                  [this] { return StillLocked("its data file was committed"); }));
  BackupSummary summary{level_, step.checkpoint, step.parent, false, {}};
  for (CapturedDisk& c : captured) summary.disks.push_back(c.summary);
  BFS_RETURN_IF_ERROR(StillLocked("its files were saved"));
  BFS_RETURN_IF_ERROR(SaveFiles(step, summary));
  if (job_) job_->KeepCheckpoint();
  log_.Info("finished: " + std::to_string(summary.disks.size()) + " disk(s) in " + Out());
  DeletePending();
  return summary;
}

}  // namespace

Result<BackupSummary> RunBackup(const BackupOptions& options) { return Run(options).Execute(); }

}  // namespace backupfs
