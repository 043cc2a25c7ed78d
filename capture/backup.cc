#include "capture/backup.h"

#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <memory>
#include <system_error>
#include <thread>

#include "backupfs/consolidation_journal.h"
#include "backupfs/saveset_lock.h"
#include "capture/backup_job.h"
#include "capture/checkpoints.h"
#include "capture/disk_capture.h"
#include "capture/libvirt.h"
#include "capture/pending_checkpoints.h"
#include "capture/saveset_files.h"
#include "common/domain_xml.h"
#include "common/qemu_nbd.h"
#include "stream/file.h"

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

namespace fs = std::filesystem;

// Where this run stands in the chain.
struct ChainStep {
  std::string checkpoint;         // the metadata's checkpointName
  std::string parent;             // "" for full and copy
  std::string id;                 // names this run's files: checkpoint, "copy" or unixtime
  bool create = false;            // the job creates `checkpoint` (full, inc)
  std::vector<std::string> list;  // the .cpt list after this run
};

// A disk to back up and how.
struct SelectedDisk {
  DomainDisk disk;
  bool raw = false;  // a raw/block/network disk taken with --raw: no bitmap, copy/full only
};

// Undoes what the run did to the domain's state, whatever way the run ends.
class DomainStateGuard {
 public:
  DomainStateGuard(virDomainPtr dom, std::string name, RunLog& log)
      : dom_(dom), name_(std::move(name)), log_(log) {}
  ~DomainStateGuard() {
    Resume();
    if (started_) {
      log_.Info("stopping domain " + name_ + ", started for the backup");
      Status s = DestroyDomain(dom_, name_);
      if (!s.ok()) log_.Warn(s.message());
    }
  }
  void MarkStarted() { started_ = true; }
  // Started paused by us: no guest agent can answer.
  bool started_paused() const { return started_; }
  void MarkSuspended() { suspended_ = true; }
  void Resume() {
    if (!suspended_) return;
    suspended_ = false;
    Status s = ResumeDomain(dom_, name_);
    if (!s.ok())
      log_.Warn(s.message());
    else
      log_.Info("domain " + name_ + " resumed");
  }

 private:
  virDomainPtr dom_;
  std::string name_;
  RunLog& log_;
  bool started_ = false;
  bool suspended_ = false;
};

class Run {
 public:
  explicit Run(const BackupOptions& o) : o_(o), log_(*o.log) {}
  Result<BackupSummary> Execute();

 private:
  std::string Dom() const { return "domain " + o_.domain; }
  bool Online() const { return !offline_; }
  // Reads dirty bitmaps (inc, diff) rather than the whole disk.
  bool Inc() const { return level_ == CaptureLevel::kInc || level_ == CaptureLevel::kDiff; }
  std::string CheckpointDir() const {
    return o_.checkpoint_dir.empty() ? o_.output_dir + "/checkpoints" : o_.checkpoint_dir;
  }
  bool Cancelled() const { return o_.cancel != nullptr && o_.cancel->load(); }

  Status Connect();
  Status KillOnly();
  Status PrepareOutputDir();
  Status LockOutputDir();
  Status RemovePartials();
  Status EnsureRunning();
  Status ResolveLevel();
  Result<std::string> ChainBroken(const std::vector<std::string>& list);
  Status RestoreCheckpoint(const std::string& name);
  Status SelectDisks();
  Status RefuseNbdinfoOnIothreads() const;
  Status RefuseExistingBackup(const ChainStep& step);
  Result<ChainStep> PlanChain();
  Result<ChainStep> Plan();
  Result<ChainStep> RestartChain(const std::string& why);
  Status NewChainInstead(const std::string& why, bool move_old);
  Status RemoveOurCheckpoints();
  Status DropOrphan(const std::string& name);
  Result<bool> SkipByEstimate(const ChainStep& step);
  std::string DataFileName(const SelectedDisk& d, const ChainStep& step) const;
  Status StartJob(const ChainStep& step, const std::string& work);
  void Freeze();
  void Thaw();
  Result<std::vector<CapturedDisk>> CaptureAll(const ChainStep& step, const std::string& work);
  Status FinishAll(std::vector<CapturedDisk>& captured);

  const BackupOptions& o_;
  RunLog& log_;
  UniqueConnect conn_;
  UniqueDomain dom_;
  std::unique_ptr<DomainStateGuard> state_;
  std::string domain_xml_;
  std::vector<SelectedDisk> disks_;           // backed up
  std::vector<JobDisk> job_disks_;            // every disk, for the job's XML
  SavesetLock dir_lock_;                      // the output directory, while we run
  CaptureLevel level_ = CaptureLevel::kFull;  // o_.level resolved (auto, offline)
  bool offline_ = false;                      // read through qemu-nbd, no libvirt job
  bool frozen_ = false;
  // Declared before job_, so that on every early return the job is aborted first, then our
  // connections to its export close (see NbdHandlePark), then its work directory (holding the
  // socket, the scratch files and owner.pid, by which other runs tell a live job from a stale
  // one) goes.
  std::unique_ptr<WorkDir> work_;
  NbdHandlePark nbd_park_;
  std::unique_ptr<BackupJob> job_;
  std::atomic<bool> failed_{false};  // a disk failed: the others stop too
};

Status Run::Connect() {
  SilenceLibvirtErrors();
  BFS_ASSIGN_OR_RETURN(conn_, ConnectLibvirt(o_.remote.uri));
  BFS_ASSIGN_OR_RETURN(dom_, LookupDomain(conn_.get(), o_.domain));
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
  std::error_code ec;
  fs::create_directories(o_.output_dir, ec);
  if (ec) return Status::IOError("cannot create " + o_.output_dir + ": " + ec.message());
  BFS_RETURN_IF_ERROR(LockOutputDir());
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  tm local{};
  localtime_r(&now, &local);
  strftime(stamp, sizeof stamp, "%m%d%Y%H%M%S", &local);  // virtnbdbackup's name
  // Before the log file: a run must not write into another domain's saveset at all.
  BFS_RETURN_IF_ERROR(CheckSavesetDomain(o_.output_dir, o_.domain));
  // virtnbdbackup's name has seconds only: runs within one second get .2, .3, ... added.
  const std::string base = o_.output_dir + "/backup." + CaptureLevelName(o_.level) + "." + stamp;
  Status opened = log_.OpenFile(base + ".log");
  for (int n = 2; opened.code() == StatusCode::kFailedPrecondition && n < 100; n++) {
    opened = log_.OpenFile(base + "." + std::to_string(n) + ".log");
  }
  BFS_RETURN_IF_ERROR(opened);
  BFS_RETURN_IF_ERROR(RemovePartials());
  // A consolidation killed after its commit: finish it before the chain is read.
  BFS_ASSIGN_OR_RETURN(std::string finished, CompleteConsolidation(o_.output_dir));
  if (!finished.empty()) log_.Warn(finished);
  return Status::Ok();
}

// With the lock held no live run writes here: a .partial file is an interrupted run's.
Status Run::RemovePartials() {
  std::error_code ec;
  std::vector<fs::path> partial;
  for (const auto& entry : fs::directory_iterator(o_.output_dir, ec)) {
    if (entry.path().filename().string().ends_with(".partial")) partial.push_back(entry.path());
  }
  if (ec) return Status::IOError("cannot list " + o_.output_dir + ": " + ec.message());
  for (const fs::path& p : partial) {
    log_.Warn("removing " + p.string() + ", left by an interrupted run");
    if (!fs::remove(p, ec) && ec) {
      return Status::IOError("cannot remove " + p.string() + ": " + ec.message());
    }
  }
  return Status::Ok();
}

// One run per output directory at a time: a second one fails at once.
Status Run::LockOutputDir() {
  BFS_ASSIGN_OR_RETURN(dir_lock_, LockSaveset(o_.output_dir));
  return Status::Ok();
}

// A shut-off domain is read offline, or started paused with -S.
Status Run::EnsureRunning() {
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(dom_.get(), o_.domain));
  if (active) {
    BFS_ASSIGN_OR_RETURN(bool aborted, AbortStaleJob(dom_.get(), o_.domain));
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

// Why the chain cannot continue ("" when it can): a checkpoint libvirt lost is redefined from
// its saved XML; a bitmap that is gone or inconsistent breaks the chain.
Result<std::string> Run::ChainBroken(const std::vector<std::string>& list) {
  if (list.empty()) return std::string("no checkpoint yet");
  if (offline_) {
    BFS_ASSIGN_OR_RETURN(std::vector<DomainDisk> all, ParseDomainDisks(domain_xml_, o_.domain));
    for (const DomainDisk& d : all) {
      if (d.format != "qcow2") continue;
      BFS_ASSIGN_OR_RETURN(bool ok, ImageHasBitmap(d.source, list.back()));
      if (!ok)
        return "disk " + d.target + " (" + d.source + ") has no usable bitmap " + list.back();
    }
    return std::string();
  }
  for (const std::string& name : list) {
    Result<UniqueCheckpoint> cpt = LookupCheckpoint(dom_.get(), o_.domain, name);
    if (!cpt.ok()) {
      Status s = RestoreCheckpoint(name);
      if (!s.ok()) return s.message();
      continue;
    }
    const std::string path = CheckpointDir() + "/" + name + ".xml";
    Result<std::string> saved_xml = ReadWholeFile(path);
    if (!saved_xml.ok()) continue;  // an older saveset without checkpoints/: nothing to compare
    BFS_ASSIGN_OR_RETURN(std::string live_xml, CheckpointXml(cpt->get(), o_.domain));
    BFS_ASSIGN_OR_RETURN(CheckpointInfo live,
                         ParseCheckpointXml(live_xml, "libvirt's checkpoint " + name));
    Result<CheckpointInfo> saved = ParseCheckpointXml(*saved_xml, path);
    if (!saved.ok()) return saved.status().message();
    if (saved->creation_time != live.creation_time) {
      return "libvirt's checkpoint " + name + " (created " + live.creation_time +
             ") is not this saveset's (created " + saved->creation_time +
             "): another chain of the domain replaced it";
    }
  }
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint last, LookupCheckpoint(dom_.get(), o_.domain, list.back()));
  // Asking libvirt for the changed size reads every bitmap: a missing one fails here.
  Result<uint64_t> size = CheckpointChangedBytes(last.get(), o_.domain);
  if (!size.ok()) return size.status().message();
  return std::string();
}

Status Run::RestoreCheckpoint(const std::string& name) {
  const std::string path = CheckpointDir() + "/" + name + ".xml";
  Result<std::string> xml = ReadWholeFile(path);
  if (!xml.ok()) {
    return Status::NotFound("libvirt has no checkpoint " + name + " and " + path +
                            " cannot be read to redefine it");
  }
  BFS_RETURN_IF_ERROR(RedefineCheckpoint(dom_.get(), o_.domain, *xml, /*validate=*/true));
  log_.Warn("libvirt had lost checkpoint " + name + ": redefined it from " + path);
  return Status::Ok();
}

// Resolves auto, checks that an inc/diff can continue the chain, and maps levels a shut-off
// domain cannot take.
Status Run::ResolveLevel() {
  level_ = o_.level;
  const std::string cpt_path = CheckpointListPath(o_.output_dir, o_.domain);
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> list, ReadCheckpointList(cpt_path));
  if (level_ == CaptureLevel::kAuto || Inc()) {
    BFS_ASSIGN_OR_RETURN(std::string broken, ChainBroken(list));
    if (!broken.empty() && level_ == CaptureLevel::kAuto && offline_) {
      return Status::FailedPrecondition(
          Dom() + " is shut off and " + o_.output_dir + " holds no chain to continue (" + broken +
          "): libvirt cannot create checkpoints for a shut-off domain; use -S to start it "
          "paused for a full backup, or -l copy");
    }
    if (!broken.empty() && level_ == CaptureLevel::kAuto) {
      log_.Info("auto: " + broken + ": starting a new chain with a full backup");
      BFS_RETURN_IF_ERROR(NewChainInstead(broken, !list.empty() && !o_.print_only));
    } else if (!broken.empty()) {
      return Status::FailedPrecondition(
          Dom() + ": cannot continue the chain in " + o_.output_dir + ": " + broken +
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

Status Run::SelectDisks() {
  BFS_ASSIGN_OR_RETURN(std::vector<DomainDisk> all, ParseDomainDisks(domain_xml_, o_.domain));
  for (const std::string& name : o_.include) {
    if (std::none_of(all.begin(), all.end(),
                     [&](const DomainDisk& d) { return d.target == name; })) {
      return Status::InvalidArgument(Dom() + " has no disk " + name + " (-i)");
    }
  }
  const bool whole = level_ == CaptureLevel::kCopy || level_ == CaptureLevel::kFull;
  for (DomainDisk& d : all) {
    const auto listed = [&d](const std::vector<std::string>& v) {
      return std::find(v.begin(), v.end(), d.target) != v.end();
    };
    std::string skip;
    const bool qcow2 = d.format == "qcow2" && d.device != "lun";
    if (!o_.include.empty() && !listed(o_.include))
      skip = "not included (-i)";
    else if (listed(o_.exclude))
      skip = "excluded (-x)";
    else if (!qcow2 && !o_.include_raw)
      skip = "format '" + d.format + "' keeps no bitmaps (--raw takes it in copy and full backups)";
    else if (!qcow2 && !whole)
      skip = "format '" + d.format + "' keeps no bitmaps: only copy and full backups take it";
    if (!skip.empty()) {
      log_.Info("skipping disk " + d.target + ": " + skip);
      job_disks_.push_back({d.target, false, false});
      continue;
    }
    job_disks_.push_back({d.target, true, qcow2});
    disks_.push_back({std::move(d), !qcow2});
  }
  BFS_RETURN_IF_ERROR(RefuseNbdinfoOnIothreads());
  if (disks_.empty())
    return Status::InvalidArgument(
        Dom() +
        " has no disk to back up (only qcow2 disks keep the bitmaps that backups need; --raw adds "
        "others to copy and full backups)");
  return Status::Ok();
}

// -q maps the disks with nbdinfo, a client of its own whose disconnect from the job's export
// would crash a domain whose disk runs in an iothread (see NbdHandlePark).
Status Run::RefuseNbdinfoOnIothreads() const {
  if (!o_.qemu_extents || offline_ || o_.print_only) return Status::Ok();
  for (const SelectedDisk& d : disks_) {
    if (d.disk.iothread.empty()) continue;
    return Status::FailedPrecondition(
        Dom() + " disk " + d.disk.target + " runs in iothread " + d.disk.iothread +
        ": -q cannot be used, because nbdinfo's disconnect from the backup export makes QEMU "
        "abort the domain (QEMU 7.2, blockdev-nbd.c); run without -q");
  }
  return Status::Ok();
}

// Never replaces a data file: a full or copy needs an empty directory, and an inc or diff
// whose file exists (a run that died between its rename and the .cpt update, or two diffs
// in one second) stops rather than overwrite a restore point.
Status Run::RefuseExistingBackup(const ChainStep& step) {
  std::error_code ec;
  for (const SelectedDisk& d : disks_) {
    const fs::path file = fs::path(o_.output_dir) / DataFileName(d, step);
    if (!fs::exists(file, ec)) continue;
    const bool new_chain = level_ == CaptureLevel::kFull || level_ == CaptureLevel::kCopy;
    return Status::InvalidArgument(
        o_.output_dir + " already holds " + file.filename().string() +
        (new_chain ? ": a new chain (or copy) needs an empty directory"
                   : ", which this run would write: move it away if it is not part of the "
                     "chain, or start a new chain"));
  }
  return Status::Ok();
}

// Deletes this tool's checkpoints, newest first (each merges its bitmap into its parent).
Status Run::RemoveOurCheckpoints() {
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> names, ListCheckpointNames(dom_.get(), o_.domain));
  std::erase_if(names, [](const std::string& n) { return !IsOurCheckpoint(n); });
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return *CheckpointNumber(a) > *CheckpointNumber(b);
  });
  for (const std::string& n : names) {
    log_.Info("removing old checkpoint " + n);
    Status s = DeleteCheckpoint(dom_.get(), o_.domain, n);
    if (s.ok()) continue;
    // A checkpoint whose bitmap is gone cannot be deleted the normal way; a new chain must
    // still be possible, so libvirt forgets it (its bitmap, if any, stays in the image).
    log_.Warn(s.message() + ": removing libvirt's record of it only");
    BFS_RETURN_IF_ERROR(DeleteCheckpointMetadata(dom_.get(), o_.domain, n));
  }
  return Status::Ok();
}

// A checkpoint with the name this run is about to create was left by a killed run (it has no
// data file): delete it so that its changes count for this run.
Status Run::DropOrphan(const std::string& name) {
  Result<UniqueCheckpoint> cpt = LookupCheckpoint(dom_.get(), o_.domain, name);
  if (!cpt.ok()) {
    return cpt.status().code() == StatusCode::kNotFound ? Status::Ok() : cpt.status();
  }
  log_.Warn("removing orphaned checkpoint " + name + " (left by an interrupted run)");
  return DeleteCheckpoint(dom_.get(), o_.domain, name);
}

Result<ChainStep> Run::PlanChain() {
  ChainStep step;
  if (level_ == CaptureLevel::kCopy) {
    step = {CheckpointName(0), "", "copy", false, {}};  // virtnbdbackup's metadata for copy
    return step;
  }
  if (level_ == CaptureLevel::kFull) {
    step = {CheckpointName(0), "", CheckpointName(0), true, {CheckpointName(0)}};
    return step;
  }
  BFS_ASSIGN_OR_RETURN(step.list, ReadCheckpointList(CheckpointListPath(o_.output_dir, o_.domain)));
  step.parent = step.list.back();
  step.checkpoint = NextCheckpointName(step.list);
  if (level_ == CaptureLevel::kDiff) {
    step.id = std::to_string(std::time(nullptr));
    return step;
  }
  step.id = step.checkpoint;
  step.create = true;
  step.list.push_back(step.checkpoint);
  return step;
}

// -p and -T: libvirt's estimate of what changed since the parent (online inc/diff only, as in
// virtnbdbackup; a full or offline backup has no cheap estimate).
Result<bool> Run::SkipByEstimate(const ChainStep& step) {
  if (!o_.print_only && !o_.threshold) return false;
  if (step.parent.empty() || offline_) {
    if (o_.print_only) {
      log_.Info(std::string(CaptureLevelName(level_)) + " backup of " +
                std::to_string(disks_.size()) +
                " disk(s): no estimate without a checkpoint of a running domain");
    }
    return o_.print_only;
  }
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint cpt, LookupCheckpoint(dom_.get(), o_.domain, step.parent));
  BFS_ASSIGN_OR_RETURN(uint64_t size, CheckpointChangedBytes(cpt.get(), o_.domain));
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

std::string Run::DataFileName(const SelectedDisk& d, const ChainStep& step) const {
  const std::string& disk = d.disk.target;
  if (d.raw) return disk + ".copy.data";  // virtnbdbackup's name for raw disks
  switch (level_) {
    case CaptureLevel::kCopy:
      return disk + ".copy.data";
    case CaptureLevel::kInc:
      return disk + ".inc." + step.id + ".data";
    case CaptureLevel::kDiff:
      return disk + ".diff." + step.id + ".data";
    default:
      return disk + ".full.data";
  }
}

// Freezes the guest's filesystems when an agent answers: the job then starts at a point where
// they are consistent. Without an agent the backup is crash-consistent, which is a warning
// only when the domain has an agent channel that does not answer.
void Run::Freeze() {
  Result<bool> has = HasGuestAgentChannel(domain_xml_, o_.domain);
  if (!has.ok() || !*has) {
    log_.Info(Dom() + " has no guest agent channel: filesystems not frozen (crash-consistent)");
    return;
  }
  Result<int> n = FreezeFilesystems(dom_.get(), o_.domain, o_.freeze_mountpoints);
  if (!n.ok()) {
    log_.Warn(n.status().message() + ": filesystems not frozen (crash-consistent backup)");
    return;
  }
  frozen_ = true;
  log_.Info("froze " + std::to_string(*n) + " guest filesystem(s)");
}

void Run::Thaw() {
  if (!frozen_) return;
  frozen_ = false;
  Status s = ThawFilesystems(dom_.get(), o_.domain, o_.freeze_mountpoints);
  if (!s.ok())
    log_.Warn(s.message());
  else
    log_.Info("thawed the guest filesystems");
}

Status Run::StartJob(const ChainStep& step, const std::string& work) {
  const std::string socket = o_.socket_file.empty() ? work + "/nbd.sock" : o_.socket_file;
  if (o_.pause) {
    BFS_RETURN_IF_ERROR(SuspendDomain(dom_.get(), o_.domain));
    state_->MarkSuspended();
    log_.Info(Dom() + " paused until its disks are read (--pause)");
  } else if (!state_->started_paused()) {
    Freeze();
  }
  log_.Info("starting the backup job" + (step.create ? ", checkpoint " + step.checkpoint : "") +
            (step.parent.empty() ? "" : ", changes since " + step.parent));
  Result<std::unique_ptr<BackupJob>> job = BackupJob::Begin(
      dom_.get(), o_.domain, BuildBackupXml(socket, work, Inc() ? step.parent : "", job_disks_),
      step.create ? BuildCheckpointXml(step.checkpoint, step.parent, job_disks_) : "",
      step.checkpoint);
  Thaw();
  if (!job.ok()) return job.status();
  job_ = std::move(job).value();
  return Status::Ok();
}

Result<std::vector<CapturedDisk>> Run::CaptureAll(const ChainStep& step, const std::string& work) {
  const std::string socket = o_.socket_file.empty() ? work + "/nbd.sock" : o_.socket_file;
  ProgressBoard progress(log_, o_.progress);
  const size_t n = disks_.size();
  std::vector<std::optional<Result<CapturedDisk>>> results(n);
  std::atomic<size_t> next{0};
  const auto cancelled = [this] { return Cancelled() || failed_.load(); };
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) {
      const SelectedDisk& d = disks_[i];
      DiskSourcePlan src;
      if (offline_) {
        src.offline_socket =
            (o_.socket_file.empty() ? work + "/nbd" : o_.socket_file) + "." + d.disk.target;
        src.offline_log = work + "/qemu-nbd." + d.disk.target + ".log";
        if (Inc()) {
          src.offline_bitmap = step.parent;
          src.dirty_context = QemuNbdDirtyContext(step.parent);
        }
      } else {
        src.job_socket = socket;
        src.park = &nbd_park_;
        if (Inc()) src.dirty_context = "qemu:dirty-bitmap:backup-" + d.disk.target;
      }
      DiskTargetPlan dst;
      dst.path = o_.output_dir + "/" + DataFileName(d, step);
      dst.type = o_.type;
      dst.lz4_level = o_.lz4_level;
      dst.qemu_extents = o_.qemu_extents;
      dst.meta.disk_name = d.disk.target;
      dst.meta.disk_format = d.raw ? "raw" : d.disk.format;
      dst.meta.checkpoint_name = step.checkpoint;
      dst.meta.parent_checkpoint = step.parent;
      dst.meta.incremental = Inc();
      // An exception must not end the thread (std::terminate: the job would never be aborted).
      try {
        results[i] = CaptureDisk(d.disk, src, dst, progress, cancelled, log_);
      } catch (const std::exception& e) {
        results[i] = Status::IOError(std::string("unexpected error: ") + e.what());
      }
      if (!results[i]->ok()) failed_ = true;
    }
  };
  const size_t threads = std::min<size_t>(n, o_.workers == 0 ? n : o_.workers);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; t++) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error& e) {  // no more threads (systemd's TasksMax, say)
      log_.Warn(std::string("reading disks on fewer threads: ") + e.what());
      break;
    }
  }
  worker();
  for (std::thread& t : pool) t.join();
  std::vector<CapturedDisk> out;
  // Report the disk that failed first, not one that stopped because of it.
  const Status* first = nullptr;
  for (size_t i = 0; i < n; i++) {
    const Status& s = results[i]->status();
    if (!s.ok() && (first == nullptr || first->code() == StatusCode::kCancelled)) first = &s;
  }
  for (size_t i = 0; i < n && first != nullptr; i++) {
    if (&results[i]->status() == first) {
      return first->WithPrefix(Dom() + " disk " + disks_[i].disk.target);
    }
  }
  for (auto& r : results) out.push_back(std::move(*r).value());
  return out;
}

// Finishes every file; when one fails, the ones already finished are removed again.
Status Run::FinishAll(std::vector<CapturedDisk>& captured) {
  for (size_t i = 0; i < captured.size(); i++) {
    Status s = captured[i].Finish();
    if (s.ok()) continue;
    for (size_t j = 0; j < i; j++) RemoveDataFile(captured[j].summary.file);
    return s.WithPrefix(Dom() + " disk " + captured[i].summary.disk);
  }
  return Status::Ok();
}

// The disks, the chain step, and the checkpoints to clear for it.
Result<ChainStep> Run::Plan() {
  disks_.clear();
  job_disks_.clear();
  BFS_RETURN_IF_ERROR(SelectDisks());
  BFS_ASSIGN_OR_RETURN(ChainStep step, PlanChain());
  BFS_RETURN_IF_ERROR(RefuseExistingBackup(step));
  if (!o_.print_only && level_ == CaptureLevel::kFull) BFS_RETURN_IF_ERROR(RemoveOurCheckpoints());
  if (!o_.print_only && step.create && !step.parent.empty()) {
    BFS_RETURN_IF_ERROR(DropOrphan(step.checkpoint));
  }
  return step;
}

// auto, when the chain cannot continue: the old chain's files move to broken-chain.<time>
// (kept for restores) and this run becomes a full backup.
Status Run::NewChainInstead(const std::string& why, bool move_old) {
  if (move_old) {
    BFS_ASSIGN_OR_RETURN(std::string moved, MoveChainAside(o_.output_dir, log_.file_path()));
    log_.Warn("the chain in " + o_.output_dir + " cannot continue (" + why +
              "): its files were moved to " + moved + "; starting a new chain with a full backup");
  }
  level_ = CaptureLevel::kFull;
  return Status::Ok();
}

// QEMU refused the incremental job: the last checkpoint's bitmap is missing or broken (libvirt
// only finds out when the job starts). auto starts a new chain; inc and diff cannot go on.
Result<ChainStep> Run::RestartChain(const std::string& why) {
  if (o_.level != CaptureLevel::kAuto) {
    return Status::FailedPrecondition(
        Dom() + ": cannot continue the chain in " + o_.output_dir + ": " + why +
        "; start a new chain with -l full (or -l auto) into a new directory");
  }
  BFS_RETURN_IF_ERROR(NewChainInstead(why, /*move_old=*/true));
  return Plan();
}

Result<BackupSummary> Run::Execute() {
  BFS_RETURN_IF_ERROR(Connect());
  if (o_.kill_only) {
    BFS_RETURN_IF_ERROR(KillOnly());
    return BackupSummary{o_.level, "", "", true, {}};
  }
  BFS_RETURN_IF_ERROR(PrepareOutputDir());
  log_.Info("backupfs-capture " + o_.version + ": " + Dom() + ", level " +
            CaptureLevelName(o_.level) + ", into " + o_.output_dir);
  BFS_RETURN_IF_ERROR(EnsureRunning());
  BFS_ASSIGN_OR_RETURN(domain_xml_, DomainXml(dom_.get(), o_.domain));
  BFS_RETURN_IF_ERROR(ResolveLevel());
  BFS_ASSIGN_OR_RETURN(ChainStep step, Plan());
  BFS_ASSIGN_OR_RETURN(bool skip, SkipByEstimate(step));
  if (skip) return BackupSummary{level_, step.checkpoint, step.parent, true, {}};
  BFS_ASSIGN_OR_RETURN(work_, WorkDir::Create(o_.scratch_dir));
  if (Online()) {
    Status started = StartJob(step, work_->path());
    if (started.code() == StatusCode::kFailedPrecondition && Inc()) {
      BFS_ASSIGN_OR_RETURN(step, RestartChain(started.message()));
      started = StartJob(step, work_->path());
    }
    BFS_RETURN_IF_ERROR(started);
  }
  BFS_ASSIGN_OR_RETURN(std::vector<CapturedDisk> captured, CaptureAll(step, work_->path()));
  if (job_) BFS_RETURN_IF_ERROR(job_->End());
  nbd_park_.CloseAll();
  state_->Resume();
  if (Cancelled()) return Status::Cancelled("stopped on request before the files were finished");
  BFS_RETURN_IF_ERROR(FinishAll(captured));
  BackupSummary summary{level_, step.checkpoint, step.parent, false, {}};
  for (CapturedDisk& c : captured) {
    c.summary.file = fs::path(c.summary.file).filename().string();
    summary.disks.push_back(c.summary);
  }
  SavesetFiles files{o_.output_dir, CheckpointDir(), o_.domain, step.id, log_};
  std::vector<DomainDisk> saved;
  for (const SelectedDisk& d : disks_) saved.push_back(d.disk);
  Status s = files.SaveAll(dom_.get(), domain_xml_, saved, level_ == CaptureLevel::kCopy,
                           step.create ? step.checkpoint : "", step.list);
  if (!s.ok()) {
    for (const DiskSummary& d : summary.disks) RemoveDataFile(o_.output_dir + "/" + d.file);
    return s;
  }
  if (job_) job_->KeepCheckpoint();
  log_.Info("finished: " + std::to_string(summary.disks.size()) + " disk(s) in " + o_.output_dir);
  // Checkpoints a consolidation could not delete (libvirt was out of reach then). The backup
  // is done: a failure here is the warning DeletePendingCheckpoints logs, nothing more.
  Result<std::vector<std::string>> left =
      DeletePendingCheckpoints(o_.output_dir, o_.remote.uri, log_);
  if (!left.ok()) log_.Warn(left.status().message());
  return summary;
}

}  // namespace

Result<BackupSummary> RunBackup(const BackupOptions& options) { return Run(options).Execute(); }

}  // namespace backupfs
