#include "capture/backup.h"

#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <memory>

#include "capture/backup_job.h"
#include "capture/block_status.h"
#include "capture/checkpoints.h"
#include "capture/domain_xml.h"
#include "capture/extents.h"
#include "capture/libvirt.h"
#include "capture/nbd_copy.h"
#include "capture/nbd_source.h"
#include "capture/subprocess.h"
#include "stream/file.h"
#include "stream/writer.h"

namespace backupfs {

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

// One disk's stream, written but not yet finished.
struct PendingDisk {
  DiskSummary summary;
  std::unique_ptr<StreamWriter> writer;
};

class Run {
 public:
  explicit Run(const BackupOptions& o) : o_(o) {}
  Result<BackupSummary> Execute();

 private:
  void Log(const std::string& line) const {
    if (o_.log) o_.log(line);
  }
  std::string Dom() const { return "domain " + o_.domain; }
  // Reads dirty bitmaps (inc, diff) rather than the whole disk.
  bool Inc() const { return level_ == CaptureLevel::kInc || level_ == CaptureLevel::kDiff; }
  Status ResolveAuto();
  Status Connect();
  Status SelectDisks();
  Status PrepareOutputDir();
  Status LockOutputDir();
  Result<ChainStep> PlanChain();
  Status RemoveOurCheckpoints();
  Status DropOrphan(const std::string& name);
  std::string DataFileName(const std::string& disk, const ChainStep& step) const;
  Result<PendingDisk> CaptureDisk(const DomainDisk& disk, const std::string& socket,
                                  const ChainStep& step);
  Status FinishAll(std::vector<PendingDisk>& pending);
  Status SaveSidecars(const ChainStep& step);
  void SaveImageInfo(const DomainDisk& disk, const ChainStep& step);

  const BackupOptions& o_;
  UniqueConnect conn_;
  UniqueDomain dom_;
  std::string domain_xml_;
  std::vector<DomainDisk> disks_;             // backed up
  std::vector<JobDisk> job_disks_;            // every disk, for the XML
  UniqueFd dir_lock_;                         // flock on the output directory while we run
  CaptureLevel level_ = CaptureLevel::kFull;  // o_.level with kAuto resolved
};

Status Run::Connect() {
  SilenceLibvirtErrors();
  BFS_ASSIGN_OR_RETURN(conn_, ConnectLibvirt(o_.uri));
  BFS_ASSIGN_OR_RETURN(dom_, LookupDomain(conn_.get(), o_.domain));
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(dom_.get(), o_.domain));
  if (!active) {
    return Status::InvalidArgument(Dom() +
                                   " is not running (backups of shut-off domains are "
                                   "not supported yet: start it first)");
  }
  BFS_ASSIGN_OR_RETURN(domain_xml_, DomainXml(dom_.get(), o_.domain));
  BFS_ASSIGN_OR_RETURN(bool aborted, AbortStaleJob(dom_.get(), o_.domain));
  if (aborted) Log("aborted the backup job of an interrupted run");
  return Status::Ok();
}

Status Run::SelectDisks() {
  BFS_ASSIGN_OR_RETURN(std::vector<DomainDisk> all, ParseDomainDisks(domain_xml_, o_.domain));
  for (DomainDisk& d : all) {
    const bool take = d.format == "qcow2";
    job_disks_.push_back({d.target, take});
    if (!take) {
      Log("skipping disk " + d.target + ": format '" + d.format + "' has no checkpoints");
      continue;
    }
    disks_.push_back(std::move(d));
  }
  if (disks_.empty()) return Status::InvalidArgument(Dom() + " has no qcow2 disk to back up");
  return Status::Ok();
}

Status Run::PrepareOutputDir() {
  std::error_code ec;
  fs::create_directories(fs::path(o_.output_dir) / "checkpoints", ec);
  if (ec) return Status::IOError("cannot create " + o_.output_dir + ": " + ec.message());
  BFS_RETURN_IF_ERROR(LockOutputDir());
  // With the lock held no live run writes here: a .partial file is an interrupted run's.
  std::vector<fs::path> partial;
  for (const auto& entry : fs::directory_iterator(o_.output_dir, ec)) {
    if (entry.path().filename().string().ends_with(".partial")) partial.push_back(entry.path());
  }
  if (ec) return Status::IOError("cannot list " + o_.output_dir + ": " + ec.message());
  for (const fs::path& p : partial) {
    Log("removing " + p.string() + ", left by an interrupted run");
    if (!fs::remove(p, ec) && ec)
      return Status::IOError("cannot remove " + p.string() + ": " + ec.message());
  }
  if (level_ != CaptureLevel::kFull && level_ != CaptureLevel::kCopy) return Status::Ok();
  const std::string kind = level_ == CaptureLevel::kFull ? "full" : "copy";
  for (const DomainDisk& d : disks_) {
    const fs::path file = fs::path(o_.output_dir) / (d.target + "." + kind + ".data");
    if (fs::exists(file, ec)) {
      return Status::InvalidArgument(o_.output_dir + " already holds a " + kind + " backup (" +
                                     file.filename().string() + "): use an empty directory");
    }
  }
  return Status::Ok();
}

Status Run::ResolveAuto() {
  level_ = o_.level;
  if (level_ != CaptureLevel::kAuto) return Status::Ok();
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> list,
                       ReadCheckpointList(CheckpointListPath(o_.output_dir, o_.domain)));
  level_ = list.empty() ? CaptureLevel::kFull : CaptureLevel::kInc;
  Log(std::string("auto: ") + (list.empty() ? "no chain yet, full backup" : "incremental"));
  return Status::Ok();
}

// One run per output directory at a time: a second one fails at once.
Status Run::LockOutputDir() {
  BFS_ASSIGN_OR_RETURN(dir_lock_, OpenFile(o_.output_dir, O_RDONLY | O_DIRECTORY));
  if (flock(dir_lock_.get(), LOCK_EX | LOCK_NB) == 0) return Status::Ok();
  if (errno == EWOULDBLOCK) {
    return Status::InvalidArgument(o_.output_dir +
                                   " is in use by another backupfs-capture run: try again later");
  }
  return Status::FromErrno("cannot lock " + o_.output_dir, errno);
}

// Deletes this tool's checkpoints, newest first (each merges its bitmap into its parent).
Status Run::RemoveOurCheckpoints() {
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> names, ListCheckpointNames(dom_.get(), o_.domain));
  std::erase_if(names, [](const std::string& n) { return !IsOurCheckpoint(n); });
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return *CheckpointNumber(a) > *CheckpointNumber(b);
  });
  for (const std::string& n : names) {
    Log("removing old checkpoint " + n);
    BFS_RETURN_IF_ERROR(DeleteCheckpoint(dom_.get(), o_.domain, n));
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
  Log("removing orphaned checkpoint " + name + " (left by an interrupted run)");
  return DeleteCheckpoint(dom_.get(), o_.domain, name);
}

Result<ChainStep> Run::PlanChain() {
  const std::string cpt_path = CheckpointListPath(o_.output_dir, o_.domain);
  ChainStep step;
  if (level_ == CaptureLevel::kCopy) {
    step = {CheckpointName(0), "", "copy", false, {}};  // virtnbdbackup's metadata for copy
    return step;
  }
  if (level_ == CaptureLevel::kFull) {
    BFS_RETURN_IF_ERROR(RemoveOurCheckpoints());
    step = {CheckpointName(0), "", CheckpointName(0), true, {CheckpointName(0)}};
    return step;
  }
  BFS_ASSIGN_OR_RETURN(step.list, ReadCheckpointList(cpt_path));
  if (step.list.empty()) {
    return Status::NotFound(cpt_path + " lists no checkpoint: run a full backup (-l full) first");
  }
  step.parent = step.list.back();
  Result<UniqueCheckpoint> parent = LookupCheckpoint(dom_.get(), o_.domain, step.parent);
  if (!parent.ok()) {
    return parent.status().WithPrefix("cannot continue the chain in " + o_.output_dir +
                                      " (run a full backup, -l full, into a new directory)");
  }
  step.checkpoint = CheckpointName(step.list.size());
  if (level_ == CaptureLevel::kDiff) {
    step.id = std::to_string(std::time(nullptr));
    return step;
  }
  BFS_RETURN_IF_ERROR(DropOrphan(step.checkpoint));
  step.id = step.checkpoint;
  step.create = true;
  step.list.push_back(step.checkpoint);
  return step;
}

std::string Run::DataFileName(const std::string& disk, const ChainStep& step) const {
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

Result<PendingDisk> Run::CaptureDisk(const DomainDisk& disk, const std::string& socket,
                                     const ChainStep& step) {
  NbdConnectOptions c{socket, disk.target, true, ""};
  if (Inc()) c.dirty_context = "qemu:dirty-bitmap:backup-" + disk.target;
  BFS_ASSIGN_OR_RETURN(NbdSource source, NbdSource::Connect(c));
  BFS_ASSIGN_OR_RETURN(BlockStatusMaps maps, QueryBlockStatus(source));
  const ExtentList frames =
      Inc() ? IncrementalFrames(maps.dirty, maps.allocation) : FullFrames(maps.allocation);

  PendingDisk p;
  p.summary = {disk.target, DataFileName(disk.target, step), source.size(), DataBytes(frames), 0};
  StreamMetadata meta;
  meta.virtual_size = source.size();
  meta.data_size = p.summary.data_bytes;
  meta.disk_name = disk.target;
  meta.disk_format = disk.format;
  meta.checkpoint_name = step.checkpoint;
  meta.parent_checkpoint = step.parent;
  meta.incremental = Inc();
  meta.compression_level = o_.lz4_level;
  WriterOptions w;
  w.lz4_level = o_.lz4_level;
  BFS_ASSIGN_OR_RETURN(p.writer,
                       StreamWriter::Create(o_.output_dir + "/" + p.summary.file, meta, w));
  BFS_RETURN_IF_ERROR(CopyToStream(source, frames, *p.writer));
  Log("disk " + disk.target + ": " + std::to_string(frames.size()) + " extents, " +
      std::to_string(p.summary.data_bytes) + " bytes of data");
  return p;
}

void RemoveDataFile(const std::string& path) {
  for (const char* suffix : {"", ".idx", ".chksum"}) {
    std::error_code ec;
    fs::remove(path + suffix, ec);
  }
}

// Finishes every stream; when one fails, the ones already finished are removed again.
Status Run::FinishAll(std::vector<PendingDisk>& pending) {
  for (size_t i = 0; i < pending.size(); i++) {
    Status s = pending[i].writer->Finish();
    if (s.ok()) {
      pending[i].summary.file_bytes = pending[i].writer->bytes_written();
      continue;
    }
    for (size_t j = 0; j < i; j++) RemoveDataFile(o_.output_dir + "/" + pending[j].summary.file);
    return s.WithPrefix(Dom() + " disk " + pending[i].summary.disk);
  }
  return Status::Ok();
}

Status WriteText(const std::string& path, const std::string& text) {
  return WriteFileAtomically(
      path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), 0644);
}

// `<disk>.<checkpoint>.qcow.json`: virtnbdrestore recreates the image with these options. Like
// virtnbdbackup, a failure is a warning only.
void Run::SaveImageInfo(const DomainDisk& disk, const ChainStep& step) {
  const std::string path = o_.output_dir + "/" + disk.target + "." + step.id + ".qcow.json";
  Result<std::string> info =
      RunCapture({"qemu-img", "info", disk.source, "--output", "json", "--force-share"});
  Status s = info.ok() ? WriteText(path, *info) : info.status();
  if (!s.ok()) Log("warning: " + Dom() + " disk " + disk.target + ": " + s.message());
}

Status Run::SaveSidecars(const ChainStep& step) {
  for (const DomainDisk& d : disks_) SaveImageInfo(d, step);
  BFS_RETURN_IF_ERROR(WriteText(o_.output_dir + "/vmconfig." + step.id + ".xml", domain_xml_));
  if (!step.create) return Status::Ok();
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint cpt,
                       LookupCheckpoint(dom_.get(), o_.domain, step.checkpoint));
  BFS_ASSIGN_OR_RETURN(std::string xml, CheckpointXml(cpt.get(), o_.domain));
  BFS_RETURN_IF_ERROR(WriteText(o_.output_dir + "/checkpoints/" + step.checkpoint + ".xml", xml));
  return WriteCheckpointList(CheckpointListPath(o_.output_dir, o_.domain), step.list);
}

Result<BackupSummary> Run::Execute() {
  BFS_RETURN_IF_ERROR(Connect());
  BFS_RETURN_IF_ERROR(ResolveAuto());
  BFS_RETURN_IF_ERROR(SelectDisks());
  BFS_RETURN_IF_ERROR(PrepareOutputDir());
  BFS_ASSIGN_OR_RETURN(ChainStep step, PlanChain());
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<WorkDir> work, WorkDir::Create());
  const std::string socket = work->path() + "/nbd.sock";
  Log("starting the backup job" + (step.create ? ", checkpoint " + step.checkpoint : "") +
      (step.parent.empty() ? "" : ", changes since " + step.parent));
  BFS_ASSIGN_OR_RETURN(
      std::unique_ptr<BackupJob> job,
      BackupJob::Begin(
          dom_.get(), o_.domain, BuildBackupXml(socket, work->path(), step.parent, job_disks_),
          step.create ? BuildCheckpointXml(step.checkpoint, step.parent, job_disks_) : "",
          step.checkpoint));
  std::vector<PendingDisk> pending;
  for (const DomainDisk& d : disks_) {
    Result<PendingDisk> p = CaptureDisk(d, socket, step);
    if (!p.ok()) return p.status().WithPrefix(Dom() + " disk " + d.target);
    pending.push_back(std::move(p).value());
  }
  BFS_RETURN_IF_ERROR(job->End());
  BFS_RETURN_IF_ERROR(FinishAll(pending));
  BackupSummary summary{level_, step.checkpoint, step.parent, {}};
  for (PendingDisk& p : pending) summary.disks.push_back(p.summary);
  Status s = SaveSidecars(step);
  if (!s.ok()) {
    for (const DiskSummary& d : summary.disks) RemoveDataFile(o_.output_dir + "/" + d.file);
    return s;
  }
  job->KeepCheckpoint();
  return summary;
}

}  // namespace

Result<BackupSummary> RunBackup(const BackupOptions& options) { return Run(options).Execute(); }

}  // namespace backupfs
